// nixboot: placeholder until the command line lands.
#include <cstdio>
int main() { std::puts("nixboot"); return 0; }
