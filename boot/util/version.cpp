// Placeholder translation unit so the library always has one source.
namespace nixboot { const char* version() { return "0.1.0"; } }
