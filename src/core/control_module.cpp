#include "vigil/control_module.hpp"

#include "vigil/log.hpp"

#include <fmt/format.h>

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <dlfcn.h>
#include <elf.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <string_view>
#include <vector>

#ifndef VIGIL_CONTROL_MODULE_DIR
#error "VIGIL_CONTROL_MODULE_DIR (where cmake --install puts vigil-control.so) must be defined"
#endif

namespace vigil {
namespace {

// Bounds on what read_elf_section() reads of a file it has not trusted the shape of.
constexpr unsigned kMaxElfSections = 4096;
constexpr std::size_t kMaxElfSectionNames = 1 << 16;

constexpr const char* kFix = "reinstall vigil (or rebuild: vigild and vigil-control.so come "
                             "from one build)";

// The directory of the running vigild, "" if /proc/self/exe cannot be read.
std::string exe_dir() {
    char buf[PATH_MAX];
    const ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
    if (n <= 0)
        return {};
    std::string path(buf, static_cast<size_t>(n));
    const auto slash = path.rfind('/');
    return slash == std::string::npos ? std::string() : path.substr(0, slash);
}

std::string module_path() {
    if (const char* env = std::getenv(kControlModuleEnv); env != nullptr && *env != '\0')
        return env;
    if (const std::string dir = exe_dir(); !dir.empty()) {
        std::string beside = dir + "/" + kControlModuleName;
        struct stat st {};
        if (::lstat(beside.c_str(), &st) == 0 || errno != ENOENT)
            return beside;
    }
    return std::string(VIGIL_CONTROL_MODULE_DIR) + "/" + kControlModuleName;
}

} // namespace

Status check_module_file(int fd, const std::string& path) {
    struct stat st {};
    if (::fstat(fd, &st) != 0)
        return make_error(errno, fmt::format("failed to stat the control module {}", path));
    if (!S_ISREG(st.st_mode))
        return make_error(
            EPERM, fmt::format("the control module {} is not a regular file; {}", path, kFix));
    if (st.st_uid != 0 && st.st_uid != ::geteuid())
        return make_error(fmt::format("the control module {} is owned by uid {}, not by "
                                      "root or vigild's uid {} (chown it, or {})",
                                      path, st.st_uid, ::geteuid(), kFix));
    if ((st.st_mode & 022) != 0)
        return make_error(fmt::format("the control module {} has mode {:04o}: group or "
                                      "others can write it (chmod go-w {}, or {})",
                                      path, st.st_mode & 07777, path, kFix));
    return ok_status();
}

Result<std::string> read_elf_section(int fd, const std::string& path, const std::string& name,
                                     std::size_t max_bytes) {
    auto read_at = [&](void* buf, std::size_t n, off_t at) {
        return ::pread(fd, buf, n, at) == static_cast<ssize_t>(n);
    };
    auto not_elf = [&](std::string_view why) {
        return make_error(ENOEXEC,
                          fmt::format("{} is not a 64-bit ELF shared object ({})", path, why));
    };
    Elf64_Ehdr eh{};
    if (!read_at(&eh, sizeof eh, 0) || std::memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0 ||
        eh.e_ident[EI_CLASS] != ELFCLASS64)
        return not_elf("no ELF header");
    if (eh.e_shentsize != sizeof(Elf64_Shdr) || eh.e_shnum == 0 || eh.e_shnum > kMaxElfSections ||
        eh.e_shstrndx >= eh.e_shnum)
        return not_elf("no usable section headers");
    std::vector<Elf64_Shdr> sh(eh.e_shnum);
    if (!read_at(sh.data(), sh.size() * sizeof(Elf64_Shdr), static_cast<off_t>(eh.e_shoff)))
        return not_elf("section headers cut short");
    const Elf64_Shdr& names = sh[eh.e_shstrndx];
    if (names.sh_size == 0 || names.sh_size > kMaxElfSectionNames)
        return not_elf("no usable section names");
    std::string table(names.sh_size, '\0');
    if (!read_at(table.data(), table.size(), static_cast<off_t>(names.sh_offset)))
        return not_elf("section names cut short");
    for (const Elf64_Shdr& s : sh) {
        if (s.sh_name >= table.size() ||
            table.compare(s.sh_name, name.size() + 1,
                          std::string_view(name.c_str(), name.size() + 1)) != 0)
            continue;
        std::string out(std::min<std::size_t>(s.sh_size, max_bytes), '\0');
        if (!read_at(out.data(), out.size(), static_cast<off_t>(s.sh_offset)))
            return not_elf("section cut short");
        out.resize(std::strlen(out.c_str()));
        return out;
    }
    return make_error(ENOENT, fmt::format("{} has no section {}", path, name));
}

Result<ControlModule> ControlModule::find() {
    std::string path = module_path();
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd.valid()) {
        const int err = errno;
        if (err == ENOENT)
            return make_error(fmt::format("the control module {} is missing: {} (or set {} "
                                          "to its path)",
                                          path, kFix, kControlModuleEnv));
        return make_error(err, fmt::format("failed to open the control module {}", path));
    }
    if (auto st = check_module_file(fd.get(), path); !st)
        return st.error();
    auto build =
        read_elf_section(fd.get(), path, VIGIL_CONTROL_BUILD_SECTION, kMaxControlBuildBytes);
    if (!build)
        return make_error(
            fmt::format("{}: not vigil's control module; {}", build.error().context, kFix));
    if (*build != kControlModuleBuild)
        return make_error(fmt::format("the control module {} is from another build ({}; "
                                      "this vigild is {}); {}",
                                      path, *build, kControlModuleBuild, kFix));
    return ControlModule(std::move(path), std::move(fd));
}

Result<std::unique_ptr<ControlService>> ControlModule::create(asio::io_context& io,
                                                              ControlBackend& backend,
                                                              const ControlServerOptions& opts) {
    if (!fd_.valid())
        return make_error(EALREADY, "the control module was already loaded");
    // The file checked by find(), whatever its path names now.
    const std::string by_fd = fmt::format("/proc/self/fd/{}", fd_.get());
    // Never dlclose()d: gRPC's threads and static state live until vigild exits.
    void* handle = ::dlopen(by_fd.c_str(), RTLD_NOW | RTLD_LOCAL);
    fd_.reset();
    if (handle == nullptr) {
        const char* why = ::dlerror();
        return make_error(fmt::format("failed to load the control module {}: {}; {}", path_,
                                      why ? why : "unknown error", kFix));
    }
    auto build = reinterpret_cast<ControlBuildFn>(::dlsym(handle, kControlBuildSymbol));
    auto make = reinterpret_cast<ControlCreateFn>(::dlsym(handle, kControlCreateSymbol));
    if (build == nullptr || make == nullptr)
        return make_error(fmt::format("{} is not vigil's control module (no {} or {}); {}", path_,
                                      kControlBuildSymbol, kControlCreateSymbol, kFix));
    if (const char* theirs = build(); std::strcmp(theirs, kControlModuleBuild) != 0)
        return make_error(fmt::format("the control module {} is from another build ({}; this "
                                      "vigild is {}); {}",
                                      path_, theirs, kControlModuleBuild, kFix));
    ControlService* service = make(&io, &backend, &opts);
    if (service == nullptr)
        return make_error(fmt::format("the control module {} failed to create the control "
                                      "server (see the lines above)",
                                      path_));
    log::debug("control module {} loaded", path_);
    return std::unique_ptr<ControlService>(service);
}

} // namespace vigil
