// The stage-1 hook's I/O shell around boot/health (see main.cpp).
#pragma once

namespace nixboot::stage1 {

// Runs the hook or the feeder; always returns 0.
int main(int argc, char** argv);

} // namespace nixboot::stage1
