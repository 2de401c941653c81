#include "boot/util/sha256.hpp"

#include "boot/util/error.hpp"
#include "boot/util/dir.hpp"
#include "boot/util/fd.hpp"

#include <sha2.h>
#include <unistd.h>

#include <cerrno>
#include <vector>

namespace nixboot {

namespace {

std::string hex_of(SHA2_CTX& ctx) {
    char hex[SHA256_DIGEST_STRING_LENGTH];
    SHA256End(&ctx, hex);
    return std::string(hex, SHA256_DIGEST_STRING_LENGTH - 1);
}

}  // namespace

std::string sha256_hex(std::string_view data) {
    SHA2_CTX ctx;
    SHA256Init(&ctx);
    SHA256Update(&ctx, reinterpret_cast<const std::uint8_t*>(data.data()), data.size());
    return hex_of(ctx);
}

std::string sha256_of_file(const std::filesystem::path& path) {
    Fd in = open_regular_file(path, "reading");  // never blocks on a FIFO put in a kernel's place
    SHA2_CTX ctx;
    SHA256Init(&ctx);
    std::vector<std::uint8_t> buf(1 << 16);
    for (;;) {
        const ssize_t n = ::read(in.get(), buf.data(), buf.size());
        if (n < 0) {
            if (errno == EINTR) continue;
            throw_errno("reading '" + path.string() + "'");
        }
        if (n == 0) break;
        SHA256Update(&ctx, buf.data(), static_cast<std::size_t>(n));
    }
    return hex_of(ctx);
}

}  // namespace nixboot
