#include "boot/util/dir.hpp"

#include "boot/util/error.hpp"
#include "tests/boot/util/test_support.hpp"

#include "tests/catch.hpp"

#include <cerrno>
#include <csignal>
#include <filesystem>
#include <random>
#include <sched.h>
#include <sys/stat.h>
#include <sys/wait.h>

using namespace nixboot;

namespace {
std::vector<std::string> names_in(const std::filesystem::path& dir) {
    std::vector<std::string> out;
    for (const auto& e : std::filesystem::directory_iterator(dir)) out.push_back(e.path().filename().string());
    std::sort(out.begin(), out.end());
    return out;
}
}  // namespace

TEST_CASE("RootDir: write_atomic, read, list, exists, remove", "[util][dir]") {
    test::TempDir tmp;
    RootDir root = RootDir::open(tmp.path());
    root.mkdirs("loader/entries");
    reset_io_stats();
    root.write_atomic("loader/entries/a.conf", "title A\n", Sync::yes);
    root.write_atomic("loader/entries/a.conf", "title B\n", Sync::yes);
    CHECK(test::read_file(tmp / "loader/entries/a.conf") == "title B\n");
    CHECK(root.read("loader/entries/a.conf", 100) == std::optional<std::string>("title B\n"));
    CHECK_FALSE(root.read("loader/entries/missing.conf", 100));
    CHECK_FALSE(root.read("nodir/missing.conf", 100));
    CHECK(root.list("loader/entries") == std::vector<std::string>{"a.conf"});  // no temp files left
    CHECK(root.list("nothere").empty());
    CHECK(root.list("") == std::vector<std::string>{"loader"});
    CHECK(root.exists("loader/entries/a.conf"));
    CHECK(root.is_regular_file("loader/entries/a.conf"));
    CHECK_FALSE(root.is_regular_file("loader/entries"));
    CHECK_FALSE(root.exists("loader/entries/b.conf"));
    const IoStats stats = io_stats();
    CHECK(stats.writes == 2);
    CHECK(stats.renames == 2);
    CHECK(stats.fsyncs == 4);  // file + directory, twice
    CHECK(root.remove("loader/entries/a.conf", Sync::yes));
    CHECK_FALSE(root.remove("loader/entries/a.conf", Sync::yes));
    CHECK(io_stats().removes == 1);
    struct stat st {};
    root.write_atomic("x", "1", Sync::no, 0600);
    REQUIRE(::stat((tmp / "x").c_str(), &st) == 0);
    CHECK((st.st_mode & 0777) == 0600);
}

TEST_CASE("RootDir: read refuses oversized files and non-files", "[util][dir]") {
    test::TempDir tmp;
    test::write_file(tmp / "big", std::string(2000, 'x'));
    RootDir root = RootDir::open(tmp.path());
    CHECK_THROWS_WITH(root.read("big", 1000), "reading '" + (tmp / "big").string() + "': larger than 1000 bytes");
    CHECK(root.read("big", 2000)->size() == 2000);
    std::filesystem::create_directory(tmp / "d");
    CHECK_THROWS_WITH(root.read("d", 10), "reading '" + (tmp / "d").string() + "': not a regular file");
}

TEST_CASE("RootDir: refuses '..', absolute and empty paths", "[util][dir]") {
    test::TempDir tmp;
    RootDir root = RootDir::open(tmp.path());
    CHECK_THROWS_WITH(root.write_atomic("../escape", "x", Sync::no), "path '../escape' contains '..'");
    CHECK_THROWS_WITH(root.write_atomic("a/../../escape", "x", Sync::no), "path 'a/../../escape' contains '..'");
    CHECK_THROWS_WITH(root.read("/etc/passwd", 10),
                      "path '/etc/passwd' is absolute (expected a path relative to the root)");
    CHECK_THROWS_WITH(root.remove("a//b", Sync::no), "path 'a//b' has an empty component");
    CHECK_THROWS_WITH(root.mkdirs("a/./b"), "path 'a/./b' contains '.'");
    CHECK_THROWS_WITH(root.read("", 10), "empty path");
    CHECK_THROWS_WITH(root.rename_idempotent("a", "../b", Sync::no), "path '../b' contains '..'");
    CHECK_FALSE(std::filesystem::exists(tmp.path().parent_path() / "escape"));
}

TEST_CASE("RootDir: never follows a symlink out of the root", "[util][dir]") {
    test::TempDir tmp;
    const auto outside = tmp / "outside";
    const auto esp = tmp / "esp";
    std::filesystem::create_directories(outside);
    std::filesystem::create_directories(esp / "loader");
    test::write_file(outside / "secret", "secret");
    std::filesystem::create_directory_symlink(outside, esp / "EFI");             // a directory symlink
    std::filesystem::create_symlink(outside / "secret", esp / "loader/x.conf");  // a file symlink
    RootDir root = RootDir::open(esp);
    const std::string dir_msg = "opening directory '" + (esp / "EFI").string() +
                                "': is a symbolic link (nixboot never follows symlinks below its root)";
    CHECK_THROWS_WITH(root.write_atomic("EFI/secret", "pwned", Sync::no), dir_msg);
    CHECK_THROWS_WITH(root.read("EFI/secret", 100), dir_msg);
    CHECK_THROWS_WITH(root.list("EFI"), "opening '" + (esp / "EFI").string() +
                                            "': is a symbolic link (nixboot never follows symlinks below its root)");
    CHECK_THROWS_WITH(root.remove("EFI/secret", Sync::no), dir_msg);
    CHECK_THROWS_WITH(root.mkdirs("EFI/nixos"), dir_msg);
    CHECK_THROWS_WITH(root.copy_in(outside / "secret", "EFI/copy", Sync::no), dir_msg);
    CHECK_THROWS_WITH(root.read("loader/x.conf", 100),
                      "opening '" + (esp / "loader/x.conf").string() +
                          "': is a symbolic link (nixboot never follows symlinks below its root)");
    CHECK(test::read_file(outside / "secret") == "secret");
    CHECK(names_in(outside) == std::vector<std::string>{"secret"});
    // Replacing a symlink by write_atomic replaces the link itself, never its target.
    root.write_atomic("loader/x.conf", "mine", Sync::no);
    CHECK(test::read_file(outside / "secret") == "secret");
    CHECK_FALSE(std::filesystem::is_symlink(esp / "loader/x.conf"));
    // Removing a symlink removes the link, not its target.
    std::filesystem::create_symlink(outside / "secret", esp / "loader/y.conf");
    CHECK(root.remove("loader/y.conf", Sync::no));
    CHECK(std::filesystem::exists(outside / "secret"));
}

TEST_CASE("RootDir: rename_idempotent is done exactly once", "[util][dir]") {
    test::TempDir tmp;
    RootDir root = RootDir::open(tmp.path());
    root.mkdirs("loader/entries");
    root.write_atomic("loader/entries/a+3.conf", "x", Sync::no);
    reset_io_stats();
    CHECK(root.rename_idempotent("loader/entries/a+3.conf", "loader/entries/a+2-1.conf", Sync::yes));
    CHECK(io_stats().renames == 1);
    // Re-running after a crash: already done.
    CHECK_FALSE(root.rename_idempotent("loader/entries/a+3.conf", "loader/entries/a+2-1.conf", Sync::yes));
    CHECK(io_stats().renames == 1);
    const auto shown = [&](const char* rel) { return "'" + (tmp / rel).string() + "'"; };
    CHECK_THROWS_WITH(root.rename_idempotent("loader/entries/none.conf", "loader/entries/none2.conf", Sync::no),
                      "renaming " + shown("loader/entries/none.conf") + " to " + shown("loader/entries/none2.conf") +
                          ": No such file or directory");
    root.write_atomic("loader/entries/b.conf", "b", Sync::no);
    CHECK_THROWS_WITH(root.rename_idempotent("loader/entries/b.conf", "loader/entries/a+2-1.conf", Sync::no),
                      "renaming " + shown("loader/entries/b.conf") + " to " + shown("loader/entries/a+2-1.conf") +
                          ": the target already exists");
    CHECK(test::read_file(tmp / "loader/entries/a+2-1.conf") == "x");  // never replaced
    CHECK(test::read_file(tmp / "loader/entries/b.conf") == "b");
}

TEST_CASE("RootDir: copy_in copies an outside file atomically", "[util][dir]") {
    test::TempDir tmp;
    std::string kernel(3 * 1024 * 1024 + 17, '\0');
    for (std::size_t i = 0; i < kernel.size(); ++i) kernel[i] = static_cast<char>(i * 7);
    test::write_file(tmp / "store/bzImage", kernel);
    std::filesystem::create_directories(tmp / "esp");
    RootDir root = RootDir::open(tmp / "esp");
    root.mkdirs("EFI/nixos");
    root.copy_in(tmp / "store/bzImage", "EFI/nixos/k.efi", Sync::yes);
    CHECK(test::read_file(tmp / "esp/EFI/nixos/k.efi") == kernel);
    CHECK_THROWS_WITH(root.copy_in(tmp / "store/missing", "EFI/nixos/m.efi", Sync::yes),
                      "copying '" + (tmp / "store/missing").string() + "': No such file or directory");
    CHECK(names_in(tmp / "esp/EFI/nixos") == std::vector<std::string>{"k.efi"});
}

TEST_CASE("RootDir: overwrite_in_place keeps the file's inode, or writes nothing", "[util][dir]") {
    test::TempDir tmp;
    RootDir root = RootDir::open(tmp.path());
    root.write_atomic("f", "aaaa", Sync::no);
    struct stat before {
    }, after{};
    REQUIRE(::stat((tmp / "f").c_str(), &before) == 0);
    reset_io_stats();
    CHECK(root.overwrite_in_place("f", "bbbb", Sync::yes));
    REQUIRE(::stat((tmp / "f").c_str(), &after) == 0);
    CHECK(test::read_file(tmp / "f") == "bbbb");
    CHECK(after.st_ino == before.st_ino);
    CHECK(io_stats().renames == 0);
    CHECK(io_stats().writes == 1);
    // Another size or no file: false, nothing written.
    CHECK_FALSE(root.overwrite_in_place("f", "ccccc", Sync::yes));
    CHECK_FALSE(root.overwrite_in_place("f", "cc", Sync::yes));
    CHECK(test::read_file(tmp / "f") == "bbbb");
    CHECK_FALSE(root.overwrite_in_place("missing", "x", Sync::yes));
    CHECK_FALSE(std::filesystem::exists(tmp / "missing"));
    // Never through a symlink.
    std::filesystem::create_symlink(tmp / "f", tmp / "link");
    CHECK_THROWS_AS(root.overwrite_in_place("link", "dddd", Sync::yes), Error);
    CHECK(test::read_file(tmp / "f") == "bbbb");
}

TEST_CASE("RootDir: append adds lines and creates the file", "[util][dir]") {
    test::TempDir tmp;
    RootDir root = RootDir::open(tmp.path());
    root.append("log", "a\n", Sync::yes);
    root.append("log", "b\n", Sync::no);
    CHECK(test::read_file(tmp / "log") == "a\nb\n");
}

TEST_CASE("RootDir: a full file system leaves the old file intact", "[util][dir][root]") {
    NIXBOOT_SKIP_UNLESS_ROOT("mounting a small tmpfs");
    test::TempDir tmp;
    test::TmpfsMount mount(tmp / "esp", "64k");
    RootDir root = RootDir::open(tmp / "esp");
    root.write_atomic("loader.conf", "default old\n", Sync::yes);
    const std::string big(256 * 1024, 'k');
    try {
        root.write_atomic("loader.conf", big, Sync::yes);
        FAIL("a 256 KiB write into a 64 KiB tmpfs succeeded");
    } catch (const SysError& e) {
        CHECK(e.errno_value() == ENOSPC);
        CHECK(std::string(e.what()) == "writing '" + (tmp / "esp/loader.conf").string() + "': No space left on device");
    }
    CHECK(test::read_file(tmp / "esp/loader.conf") == "default old\n");
    CHECK(root.list("") == std::vector<std::string>{"loader.conf"});  // the temp file is gone
    // The same for copy_in.
    test::write_file(tmp / "kernel", big);
    CHECK_THROWS_AS(root.copy_in(tmp / "kernel", "loader.conf", Sync::yes), SysError);
    CHECK(test::read_file(tmp / "esp/loader.conf") == "default old\n");
    CHECK(root.list("") == std::vector<std::string>{"loader.conf"});
}

TEST_CASE("RootDir: a read-only file system fails with the path and changes nothing", "[util][dir][root]") {
    NIXBOOT_SKIP_UNLESS_ROOT("remounting a tmpfs read-only");
    test::TempDir tmp;
    test::TmpfsMount mount(tmp / "esp", "1m");
    {
        RootDir root = RootDir::open(tmp / "esp");
        root.write_atomic("a+1.conf", "x", Sync::yes);
    }
    mount.remount_read_only();
    RootDir root = RootDir::open(tmp / "esp");
    CHECK_THROWS_WITH(
        root.write_atomic("a+1.conf", "y", Sync::yes),
        "writing '" + (tmp / "esp/a+1.conf").string() + "' (creating a temporary file): Read-only file system");
    CHECK_THROWS_WITH(root.rename_idempotent("a+1.conf", "a.conf", Sync::yes),
                      "renaming '" + (tmp / "esp/a+1.conf").string() + "' to '" + (tmp / "esp/a.conf").string() +
                          "': Read-only file system");
    CHECK_THROWS_WITH(root.remove("a+1.conf", Sync::yes),
                      "removing '" + (tmp / "esp/a+1.conf").string() + "': Read-only file system");
    CHECK(root.read("a+1.conf", 10) == std::optional<std::string>("x"));
}

TEST_CASE("RootDir: a stale temp file identical to its target is a torn rename's twin and is kept", "[util][dir]") {
    test::TempDir tmp;
    RootDir root = RootDir::open(tmp.path());
    root.write_atomic("k-linux", std::string(200 * 1024, 'k'), Sync::no);
    root.write_atomic("e.conf", "entry\n", Sync::no);
    const std::string tag = ".nixboot-tmp-0-0-abc";  // PID 0: never a live writer
    // FAT's twin: a second directory entry on the target's clusters (here a
    // hard link), and what cannot be told from one there: equal bytes.
    REQUIRE(::link((tmp / "k-linux").c_str(), (tmp / (".k-linux" + tag)).c_str()) == 0);
    test::write_file(tmp / (".e.conf" + tag), "entry\n");
    // Not twins: other bytes of the same size, another size, no target.
    std::string other(200 * 1024, 'k');
    other.back() = 'x';
    root.write_atomic("j-linux", std::string(200 * 1024, 'k'), Sync::no);
    test::write_file(tmp / (".j-linux" + tag), other);
    test::write_file(tmp / (".e.conf" + std::string(".nixboot-tmp-0-1-abc")), "entry, half");
    test::write_file(tmp / (".gone.conf" + tag), "entry\n");
    CHECK(root.remove_stale_temp_files("", Sync::no) == 3);
    CHECK(root.list("") == std::vector<std::string>{".e.conf" + tag, ".k-linux" + tag, "e.conf", "j-linux", "k-linux"});
    CHECK(test::read_file(tmp / "k-linux") == std::string(200 * 1024, 'k'));
}

TEST_CASE("RootDir: leftovers of an interrupted write are cleaned up, the file is intact", "[util][dir]") {
    test::TempDir tmp;
    RootDir root = RootDir::open(tmp.path());
    root.mkdirs("loader/entries");
    root.write_atomic("loader/entries/a.conf", "old\n", Sync::yes);
    // What a crash between "write temp" and "rename" leaves behind: the
    // writer's PID is gone.
    const pid_t dead = ::fork();
    REQUIRE(dead >= 0);
    if (dead == 0) ::_exit(0);
    REQUIRE(::waitpid(dead, nullptr, 0) == dead);
    const std::string tag = ".nixboot-tmp-" + std::to_string(dead) + "-0-abc";
    test::write_file(tmp / ("loader/entries/.a.conf" + tag), "new, half");
    test::write_file(tmp / "loader/entries/.hidden-by-user", "keep");
    // A live writer's temp file (our parent stands for it) is spared while
    // recent, removed once older than any write takes.
    const std::string live = "loader/entries/.b.conf.nixboot-tmp-" + std::to_string(::getppid()) + "-0-abc";
    test::write_file(tmp / live, "being written");
    CHECK(root.remove_stale_temp_files("loader/entries", Sync::yes) == 1);
    CHECK(root.list("loader/entries") ==
          std::vector<std::string>{".b.conf.nixboot-tmp-" + std::to_string(::getppid()) + "-0-abc", ".hidden-by-user",
                                   "a.conf"});
    CHECK(test::read_file(tmp / "loader/entries/a.conf") == "old\n");
    std::filesystem::last_write_time(tmp / live, std::filesystem::file_time_type::clock::now() - std::chrono::hours(2));
    CHECK(root.remove_stale_temp_files("loader/entries", Sync::yes) == 1);
    CHECK(root.remove_stale_temp_files("loader/entries", Sync::yes) == 0);
    CHECK(root.remove_stale_temp_files("no/such/dir", Sync::yes) == 0);
}

TEST_CASE("read_file_if_exists: bounded reads outside a root", "[util][dir]") {
    test::TempDir tmp;
    test::write_file(tmp / "f", "hello");
    CHECK(read_file_if_exists(tmp / "f", 5) == std::optional<std::string>("hello"));
    CHECK_FALSE(read_file_if_exists(tmp / "missing", 5));
    CHECK_THROWS_WITH(read_file_if_exists(tmp / "f", 4), "reading '" + (tmp / "f").string() + "': larger than 4 bytes");
    CHECK_THROWS_WITH(read_file_if_exists(tmp.path(), 4), "reading '" + tmp.path().string() + "': not a regular file");
    // /proc files report size 0 and are still read whole.
    const auto boot_id = read_file_if_exists("/proc/sys/kernel/random/boot_id", 100);
    REQUIRE(boot_id);
    CHECK(boot_id->size() == 37);
}

namespace {
bool has_temp_file(const std::filesystem::path& dir) {
    for (const auto& entry : std::filesystem::directory_iterator(dir))
        if (entry.path().filename().string().find(".nixboot-tmp-") != std::string::npos) return true;
    return false;
}
}  // namespace

TEST_CASE("RootDir: a writer killed at any instant leaves the old or the new file, never a mix", "[util][dir]") {
    test::TempDir tmp;
    const std::string a(256 * 1024, 'a');
    const std::string b(300 * 1024, 'b');
    {
        RootDir root = RootDir::open(tmp.path());
        root.write_atomic("loader.conf", a, Sync::no);
    }
    std::mt19937 rng(8);
    unsigned leftovers = 0;
    for (int round = 0; round < 40; ++round) {
        int started[2];
        REQUIRE(::pipe(started) == 0);
        const pid_t child = ::fork();
        REQUIRE(child >= 0);
        if (child == 0) {
            RootDir root = RootDir::open(tmp.path());
            for (bool first = true;; first = false) {
                root.write_atomic("loader.conf", b, Sync::no);
                root.write_atomic("loader.conf", a, Sync::no);
                if (first && ::write(started[1], "x", 1) != 1) ::_exit(1);
            }
        }
        // Kill only once the child is really writing (the machine may be busy).
        char byte = 0;
        REQUIRE(::read(started[0], &byte, 1) == 1);
        ::close(started[0]);
        ::close(started[1]);
        if (round % 2 == 0) {
            ::usleep(static_cast<useconds_t>(rng() % 3000));
        } else {
            // Kill the moment a temporary file is seen: on a loaded machine
            // the child may not run at all during a random sleep, and every
            // kill would land between two writes.
            for (int poll = 0; poll < 200000 && !has_temp_file(tmp.path()); ++poll) ::sched_yield();
        }
        ::kill(child, SIGKILL);
        int status = 0;
        ::waitpid(child, &status, 0);
        const std::string content = test::read_file(tmp / "loader.conf");
        REQUIRE((content == a || content == b));
        RootDir root = RootDir::open(tmp.path());
        leftovers += static_cast<unsigned>(root.remove_stale_temp_files("", Sync::no));
        REQUIRE(root.list("") == std::vector<std::string>{"loader.conf"});
    }
    // The kills on a seen temporary file land mid-write: the cleanup had
    // real work to do.
    CHECK(leftovers > 0);
}

TEST_CASE("RootDir: Sync::file_only fsyncs each file and leaves the directory to one fsync_dir", "[util][dir]") {
    test::TempDir tmp;
    RootDir root = RootDir::open(tmp.path());
    root.mkdirs("loader/entries");
    reset_io_stats();
    for (int i = 0; i < 10; ++i)
        root.write_atomic("loader/entries/e" + std::to_string(i) + ".conf", "x", Sync::file_only);
    root.fsync_dir("loader/entries");
    CHECK(io_stats().fsyncs == 11);
    CHECK(io_stats().writes == 10);
    reset_io_stats();
    root.write_atomic("loader/entries/e0.conf", "y", Sync::yes);
    CHECK(io_stats().fsyncs == 2);
    reset_io_stats();
    root.write_atomic("loader/entries/e0.conf", "z", Sync::no);
    CHECK(io_stats().fsyncs == 0);
    CHECK(test::read_file(tmp / "loader/entries/e0.conf") == "z");
}

TEST_CASE("AtomicFile: explicit commit, without it the target is untouched", "[util][dir]") {
    test::TempDir tmp;
    RootDir root = RootDir::open(tmp.path());
    root.write_atomic("loader.conf", "old\n", Sync::no);
    {
        AtomicFile file = root.begin_atomic("loader.conf");
        file.write("new, ");
        file.write("not committed\n");
        CHECK(root.list("").size() == 2);  // the temp file exists meanwhile
    }
    CHECK(test::read_file(tmp / "loader.conf") == "old\n");
    CHECK(root.list("") == std::vector<std::string>{"loader.conf"});
    AtomicFile file = root.begin_atomic("loader.conf", 0600);
    file.write("new\n");
    AtomicFile moved = std::move(file);  // ownership of the temp file moves too
    moved.commit(Sync::yes);
    CHECK(test::read_file(tmp / "loader.conf") == "new\n");
    CHECK_THROWS_WITH(moved.commit(Sync::yes), "writing '" + (tmp / "loader.conf").string() + "': already committed");
    CHECK_THROWS_WITH(moved.write("x"), "writing '" + (tmp / "loader.conf").string() + "': already committed");
    CHECK(root.list("") == std::vector<std::string>{"loader.conf"});
    CHECK_THROWS_WITH(root.begin_atomic("missing-dir/x"),
                      "opening directory '" + (tmp / "missing-dir").string() + "': No such file or directory");
}

TEST_CASE("RootDir and outside reads never block on a FIFO, and name a symlink loop", "[util][dir]") {
    test::TempDir tmp;
    std::filesystem::create_directories(tmp / "esp/loader/entries");
    REQUIRE(::mkfifo((tmp / "esp/loader/entries/a.conf").c_str(), 0644) == 0);
    REQUIRE(::mkfifo((tmp / "fifo").c_str(), 0644) == 0);
    std::filesystem::create_symlink("loop", tmp / "loop");
    RootDir root = RootDir::open(tmp / "esp");
    CHECK(test::finishes_within(std::chrono::seconds(10), {tmp / "esp/loader/entries/a.conf", tmp / "fifo"}, [&] {
        CHECK_THROWS_WITH(root.read("loader/entries/a.conf", 100),
                          "reading '" + (tmp / "esp/loader/entries/a.conf").string() + "': not a regular file");
        CHECK_THROWS_WITH(read_file_if_exists(tmp / "fifo", 100),
                          "reading '" + (tmp / "fifo").string() + "': not a regular file");
        CHECK_THROWS_WITH(root.copy_in(tmp / "fifo", "k.efi", Sync::no),
                          "copying '" + (tmp / "fifo").string() + "': not a regular file");
        CHECK_THROWS_WITH(open_regular_file(tmp / "fifo", "hashing"),
                          "hashing '" + (tmp / "fifo").string() + "': not a regular file");
    }));
    CHECK_THROWS_WITH(read_file_if_exists(tmp / "loop", 100),
                      "reading '" + (tmp / "loop").string() + "': a symbolic link loop");
    CHECK_THROWS_WITH(root.copy_in(tmp / "loop", "k.efi", Sync::no),
                      "copying '" + (tmp / "loop").string() + "': a symbolic link loop");
    CHECK_THROWS_WITH(open_regular_file("/dev/zero", "reading"), "reading '/dev/zero': not a regular file");
    CHECK(root.list("") == std::vector<std::string>{"loader"});
}

TEST_CASE("RootDir: subdir and regular_files see through one directory fd, never through a symlink", "[util][dir]") {
    test::TempDir tmp;
    test::write_file(tmp / "a/b/kernel", "k");
    test::write_file(tmp / "outside/kernel2", "k");
    std::filesystem::create_directories(tmp / "a/b/dir");
    std::filesystem::create_symlink(tmp / "outside/kernel2", tmp / "a/b/link");
    std::filesystem::create_directory_symlink(tmp / "outside", tmp / "a/linked");
    const auto root = RootDir::open(tmp.path());
    CHECK(root.regular_files("a/b") == std::set<std::string>{"a/b/kernel"});
    CHECK(root.regular_files("a/missing").empty());
    const auto sub = root.subdir("a/b");
    REQUIRE(sub);
    CHECK(sub->read("kernel", 16) == std::optional<std::string>("k"));
    CHECK(sub->display("kernel") == tmp / "a/b/kernel");
    CHECK_FALSE(root.subdir("a/missing"));
    CHECK_THROWS_AS(root.subdir("a/linked"), Error);  // a symlinked directory is not followed
}
