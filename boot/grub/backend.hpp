// The GRUB backend: boot/backend.hpp over grub.cfg (generated), grubenv (the
// live trial counter and the default, written in place by GRUB and nixboot)
// and BOOT/grub/nixboot-state.{a,b} (every entry's state, two copies written
// in turn). Layout and keys: docs/grub.md.
#pragma once

#include "boot/backend.hpp"
#include "boot/grub/consume.hpp"
#include "boot/grub/grubenv.hpp"
#include "boot/grub/probe.hpp"
#include "boot/grub/state.hpp"

#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace nixboot::grub {

// Paths relative to the boot dir (--esp): grub.cfg, the default env block,
// the kernel copies (the state copies: state_slot_paths). On the ESP:
// env_on_esp.
inline constexpr std::string_view cfg_path = "grub/grub.cfg";
inline constexpr std::string_view env_path = "grub/grubenv";
inline constexpr std::string_view kernels_dir = "kernels";
inline constexpr std::string_view env_on_esp = "nixboot/grubenv";

// The "grub-*" config keys (docs/contracts.md), parsed and checked.
struct GrubSettings {
    // Path of the boot dir as GRUB sees it on its filesystem: "" when the boot
    // dir is the root of its filesystem, "/boot" when it is a directory of the
    // root filesystem. nullopt: ask grub-mkrelpath.
    std::optional<std::string> device_path;
    std::optional<std::filesystem::path> efi_dir;  // the ESP, when it is not the boot dir
    std::optional<FsInfo> probe_boot;              // injected grub-probe answers
    std::optional<FsInfo> probe_efi;
    unsigned timeout = 5;
    std::filesystem::path cmdline = "/proc/cmdline";
    // grub-install (install --install-bootloader only)
    std::string target;  // "x86_64-efi", "i386-pc", ...
    std::string device;  // i386-pc: the disk, e.g. /dev/sda
    bool removable = false;
    std::string install_program = "grub-install";
};

// Parses BackendOptions::extra. Throws UsageError "grub-timeout: 'x' is not
// a number" / "unknown key 'grub-foo'" (exit 2, nothing written).
GrubSettings parse_grub_settings(const std::map<std::string, std::string>& extra);

struct Stored;  // the state as read from its copies (backend.cpp)

class GrubBackend final : public Backend {
public:
    explicit GrubBackend(const BackendOptions& opts);
    // For tests: an explicit prober instead of grub-probe / the injected keys.
    GrubBackend(const BackendOptions& opts, std::shared_ptr<const Prober> prober);

    Bootloader kind() const override { return Bootloader::grub; }
    LoaderView read() const override;
    SyncResult sync(std::span<const Generation> generations, const SyncOptions& opts) override;
    // Refuses (Error) where GRUB cannot consume the try itself unless
    // opts.accept_risk, naming the unprotected window.
    ArmMode arm(std::string_view id, const ArmOptions& opts) override;
    void disarm() override;
    void set_state(std::string_view id, EntryState state) override;
    void set_default(std::string_view id) override;
    GcResult collect_garbage() override;
    // Stat lines of grub.cfg, nixboot.json, grubenv (both places), the
    // kernels dir, plus the grub-* settings: Machine::install's fast path.
    std::string fingerprint() const override;

    // Where the env block goes on this machine and who consumes tries (probed once).
    const EnvPlacement& placement() const;
    const GrubSettings& settings() const noexcept { return settings_; }

private:
    std::string device_path() const;
    RootDir open_env_dir() const;
    std::string env_rel() const;
    GrubCfgSpec cfg_spec(const GrubState& state) const;
    void write_all(RootDir& boot, const Stored& from, const GrubState& state, bool with_cfg);
    // The state as stored in BOOT: the held reading while reads are held
    // (see Backend::HeldReads), else read now.
    std::shared_ptr<const Stored> stored(const RootDir& boot) const;
    // Drops the held reading when it goes out of scope: first in every method
    // that writes, however it leaves.
    struct Forget {
        const GrubBackend& backend;
        ~Forget() { backend.held_.reset(); }
    };

protected:
    void hold_reads(bool held) const override;

private:
    BackendOptions opts_;
    GrubSettings settings_;
    std::shared_ptr<const Prober> prober_;
    mutable std::optional<EnvPlacement> placement_;
    mutable std::optional<std::string> device_path_;
    mutable unsigned holds_ = 0;
    mutable std::shared_ptr<const Stored> held_;  // only while holds_ > 0
};

std::unique_ptr<Backend> make_grub_backend(const BackendOptions& opts);

// grub-install's argv for `install --install-bootloader`: --target,
// --boot-directory=BOOT, --efi-directory and --bootloader-id=NixOS for EFI,
// --removable, and the disk for i386-pc. Throws UsageError for a missing
// target, an EFI target without grub-efi-dir, i386-pc without grub-device.
std::vector<std::string> grub_install_argv(const GrubSettings& settings, const std::filesystem::path& boot_dir);
// Runs it; Error "grub-install failed (exit 1): <first stderr line>".
void install_grub_bootloader(const BackendOptions& opts);

}  // namespace nixboot::grub

namespace nixboot {
using grub::make_grub_backend;
}
