// A real OpenSSH server for the deploy tests: `sshd -D` on 127.0.0.1 and a
// free port, with a host key and an authorized client key generated into the
// test's temporary directory. Every session runs the test's target shell
// (ForceCommand), which puts a `nixboot` wrapper on PATH: the real binary
// against a CheckRig (fake ESP, state, /run; reboot, systemd-run and
// systemctl replaced by recorders).
#pragma once

#include "tests/boot/health/check_rig.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>

#include <chrono>
#include <thread>

namespace nixboot::test {

// A port nothing listens on right now (bound, then closed).
inline int free_port() {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0)
        throw std::runtime_error("no free port");
    ::close(fd);
    return ntohs(a.sin_port);
}

inline bool accepts(int port) {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
    ::close(fd);
    return ok;
}

struct Sshd {
    std::filesystem::path dir;
    int port = free_port();
    pid_t pid = -1;

    // Generates the keys and config under `d` and starts sshd; REQUIREs it
    // accepts connections within 10 s.
    Sshd(const std::filesystem::path& d, const std::string& sshd, const std::string& keygen,
         const std::filesystem::path& force_command)
        : dir(d) {
        std::filesystem::create_directories(dir);
        REQUIRE(run_program({keygen, "-q", "-t", "ed25519", "-N", "", "-f", (dir / "host_key").string()}).status == 0);
        REQUIRE(run_program({keygen, "-q", "-t", "ed25519", "-N", "", "-f", (dir / "client_key").string()}).status ==
                0);
        std::filesystem::copy_file(dir / "client_key.pub", dir / "authorized_keys");
        write_file(dir / "sshd_config", "ListenAddress 127.0.0.1\nHostKey " + (dir / "host_key").string() +
                                            "\nPidFile " + (dir / "sshd.pid").string() + "\nAuthorizedKeysFile " +
                                            (dir / "authorized_keys").string() +
                                            "\nStrictModes no\nPasswordAuthentication no\n"
                                            "KbdInteractiveAuthentication no\nUsePAM no\nPermitRootLogin "
                                            "prohibit-password\nForceCommand " +
                                            force_command.string() + "\nLogLevel ERROR\n");
        // sshd refuses to start without its privilege separation directory.
        std::filesystem::create_directories("/run/sshd");
        pid = fork();
        if (pid == 0) {
            FILE* e = std::freopen((dir / "sshd.log").c_str(), "w", stderr);
            (void)e;
            std::string port_text = std::to_string(port);
            std::string config = (dir / "sshd_config").string();
            execl(sshd.c_str(), sshd.c_str(), "-D", "-e", "-f", config.c_str(), "-p", port_text.c_str(), nullptr);
            _exit(127);
        }
        for (int i = 0; i < 200 && !accepts(port); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(50));
        INFO(read_or_empty(dir / "sshd.log"));
        REQUIRE(accepts(port));
    }
    ~Sshd() { stop(); }
    Sshd(const Sshd&) = delete;
    Sshd& operator=(const Sshd&) = delete;

    void stop() {
        if (pid <= 0) return;
        ::kill(pid, SIGTERM);
        ::waitpid(pid, nullptr, 0);
        pid = -1;
    }

    // The ssh options a client needs: the port, the key, no user config, no
    // known_hosts prompts, no warnings on stderr.
    std::string client_options() const {
        return "-F /dev/null -p " + std::to_string(port) + " -i " + (dir / "client_key").string() +
               " -o IdentitiesOnly=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=" +
               (dir / "known_hosts").string() + " -o LogLevel=ERROR";
    }
};

// The target side of a CheckRig as an ssh session sees it: the target shell
// (ForceCommand) exports what CheckRig::nixboot() passes and puts a
// `nixboot` wrapper (the real binary with the rig's global options) on PATH.
inline std::filesystem::path write_target_shell(const CheckRig& c) {
    const auto bin = c.rig.tmp / "target-bin";
    write_script(bin / "nixboot", "#!/bin/sh\nexec '" + std::string(NIXBOOT_BIN) + "' --esp '" + c.rig.esp.string() +
                                      "' --profile '" + c.rig.profile.string() + "' --efivars '" +
                                      c.rig.efivars.string() + "' --state '" + c.rig.state.string() + "' --config '" +
                                      c.config.string() + "' \"$@\"\n");
    const auto shell = c.rig.tmp / "target-shell";
    write_script(shell, "#!/bin/sh\nexport PATH='" + bin.string() +
                            "':/usr/sbin:/usr/bin:/sbin:/bin\nexport NIXBOOT_REBOOT_COMMAND='" + c.reboot.string() +
                            "'\nexport NIXBOOT_SYSTEMD_RUN='" + c.systemd_run.string() +
                            "'\nexport NIXBOOT_SYSTEMCTL='" + c.systemctl.string() +
                            "'\nexport NIXBOOT_CURRENT_SYSTEM='" + (c.rig.store / "system-2").string() +
                            "'\nexec /bin/sh -c \"$SSH_ORIGINAL_COMMAND\"\n");
    return shell;
}

}  // namespace nixboot::test
