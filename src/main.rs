// mimalloc instead of glibc's malloc: malloc and free were the largest
// part of a listed page's CPU. Built without transparent huge pages
// (`no_thp`): with them its arenas are backed by 2 MiB pages, and
// the idle desk grew from 15 to 27 MB, over its 25 MB budget; without them
// it idles at 16 MB. docs/PERFORMANCE.md has the paired runs.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    certdesk::cli::main()
}
