// The single Catch2 main; every other file in tests/ only defines test cases.
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>
