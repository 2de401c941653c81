"""nixboot VM test harness: images, machines, bootloaders, scenarios."""
