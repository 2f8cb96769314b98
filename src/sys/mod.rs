//! The only place with `unsafe`: thin wrappers over system calls that nix
//! does not offer safely. Every block says why it is sound.

#![expect(
    unsafe_code,
    reason = "this module wraps the system calls nix leaves unsafe"
)]

pub mod inherited;
pub mod signals;
