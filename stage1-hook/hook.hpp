// The stage-1 hook's I/O shell around boot/health (see main.cpp).
#pragma once

namespace nixboot::stage1 {

// Runs the hook or the feeder (0); usage for --help (0) or an unknown
// argument (2); refuses the hook outside the initrd (1).
int main(int argc, char** argv);

}  // namespace nixboot::stage1
