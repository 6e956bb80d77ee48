//! `nprobe_fprintf`, the legacy V1 printf for records.
//!
//! It is variadic, which stable Rust cannot define, so it is written in C
//! (`ffi/csrc/nprobe_fprintf.c`, compiled by build.rs). A cdylib, however,
//! exports only the symbols of Rust items, so a C definition would stay
//! local to `libgopher.so`. Hence on x86_64 and aarch64 the exported
//! `nprobe_fprintf` is this Rust naked function, a single tail jump to the C
//! implementation `gopher_nprobe_fprintf_impl`: it touches no register or
//! stack slot, so the variadic arguments (including `%al` on x86_64) arrive
//! intact. On other architectures the C file defines `nprobe_fprintf`
//! itself (build.rs passes `-DGOPHER_NPROBE_FPRINTF_IN_C`); it is then in
//! `libgopher.a` and the rlib but not exported from `libgopher.so`.
//!
//! The declaration C code sees is in `include/nprobe_fprintf.h`; cbindgen
//! skips this module.

/// cbindgen:ignore
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
mod trampoline {
    extern "C" {
        /// `int gopher_nprobe_fprintf_impl(FILE *, const char *, ...)`.
        fn gopher_nprobe_fprintf_impl();
    }

    /// `int nprobe_fprintf(FILE *stream, const char *fmt, ...)`: see the
    /// module documentation and `include/nprobe_fprintf.h`.
    ///
    /// # Safety
    /// Called from C with the arguments of `fprintf`.
    #[no_mangle]
    #[unsafe(naked)]
    pub unsafe extern "C" fn nprobe_fprintf() {
        #[cfg(target_arch = "x86_64")]
        core::arch::naked_asm!("jmp {}", sym gopher_nprobe_fprintf_impl);
        #[cfg(target_arch = "aarch64")]
        core::arch::naked_asm!("b {}", sym gopher_nprobe_fprintf_impl);
    }
}
