// nixboot-stage1: placeholder until the boot-health work lands; never fails a boot.
int main() { return 0; }
