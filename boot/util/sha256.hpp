// SHA-256 through libmd (the BSD message digest library Debian and nixpkgs
// ship): names of content copies, checksums of nixboot's own state copies,
// the install key of the EFI variables.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>

namespace nixboot {

// Lowercase hex SHA-256 of `data`.
std::string sha256_hex(std::string_view data);
// Lowercase hex SHA-256 of the regular file at `path`, read in blocks
// (refuses a FIFO or device without blocking on it). Throws SysError naming it.
std::string sha256_of_file(const std::filesystem::path& path);

}  // namespace nixboot
