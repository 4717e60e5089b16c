//! The mptcpify program, assembled by hand: an `fmod_ret` program on
//! `int update_socket_protocol(int family, int type, int protocol)` that
//! returns `IPPROTO_MPTCP` for `socket(AF_INET | AF_INET6, SOCK_STREAM,
//! 0 | IPPROTO_TCP)` when the [scope](crate::Scope) says so, and
//! `protocol` unchanged otherwise.
//!
//! It is the kernel selftest `tools/testing/selftests/bpf/progs/mptcpify.c`
//! plus a scope filter:
//!
//! * the **config** map (array, one `u32` at key 0) holds the mode:
//!   [`MODE_OFF`] (or no entry) changes nothing, [`MODE_ALL`] every
//!   socket, [`MODE_CGROUPS`] only sockets created by a task whose cgroup
//!   (v2) is in the cgroups map, or lies below one that is;
//! * the **cgroups** map (hash, `u64` cgroup id → `u8`) holds the ids: the
//!   inode numbers of the cgroup directories.
//!
//! The tracing context is an array of `u64`, one per argument: `family` at
//! offset 0, `type` at 8, `protocol` at 16. The arguments are C `int`s, so
//! they are compared as 32-bit values (`w` registers): the upper half of a
//! slot is not guaranteed. `type` reaches the hook as the application
//! passed it, `SOCK_NONBLOCK | SOCK_CLOEXEC` included (the kernel masks
//! them only afterwards), so the program masks it with `SOCK_TYPE_MASK`
//! first: runtimes such as Go's and tokio's create their sockets that way.
//!
//! The full listing (`wN` is the low half of `rN`; `L_*` are labels):
//!
//! ```text
//!     r6 = *(u64 *)(r1 + 0)        ; family
//!     r7 = *(u64 *)(r1 + 8)        ; type
//!     r8 = *(u64 *)(r1 + 16)       ; protocol (r6..r8 survive helper calls)
//!     if w6 == AF_INET goto L_fam  ; 2
//!     if w6 != AF_INET6 goto L_keep; 10
//! L_fam:
//!     w7 &= SOCK_TYPE_MASK         ; 0xf: drop SOCK_NONBLOCK, SOCK_CLOEXEC
//!     if w7 != SOCK_STREAM goto L_keep
//!     if w8 == 0 goto L_proto
//!     if w8 != IPPROTO_TCP goto L_keep
//! L_proto:                         ; a TCP socket: what does the scope say?
//!     *(u32 *)(r10 - 4) = 0        ; key 0 of the config map, on the stack
//!     r2 = r10
//!     r2 += -4
//!     r1 = map[config]             ; lddw, two slots
//!     call bpf_map_lookup_elem     ; r0 = &mode or NULL
//!     if r0 == 0 goto L_keep
//!     r1 = *(u32 *)(r0 + 0)        ; mode
//!     if w1 == MODE_ALL goto L_mptcp
//!     if w1 != MODE_CGROUPS goto L_keep
//!     call bpf_get_current_cgroup_id
//!     *(u64 *)(r10 - 16) = r0      ; key: the task's own cgroup
//!     r2 = r10
//!     r2 += -16
//!     r1 = map[cgroups]
//!     call bpf_map_lookup_elem
//!     if r0 != 0 goto L_mptcp
//!   for level in 1..=MAX_ANCESTOR_LEVEL (unrolled):
//!     r1 = level
//!     call bpf_get_current_ancestor_cgroup_id
//!     if r0 == 0 goto L_keep       ; the task's cgroup is less deep
//!     *(u64 *)(r10 - 16) = r0
//!     r2 = r10
//!     r2 += -16
//!     r1 = map[cgroups]
//!     call bpf_map_lookup_elem
//!     if r0 != 0 goto L_mptcp
//!   end
//!     goto L_keep
//! L_mptcp:
//!     w0 = IPPROTO_MPTCP           ; 262
//!     exit
//! L_keep:
//!     w0 = w8                      ; protocol, unchanged
//!     exit
//! ```
//!
//! Level 0 (the root cgroup) is never looked up, so a root id in the map
//! does not mean "everything"; use [`MODE_ALL`] for that.

use crate::insn::{Asm, AsmError, Insn, R0, R1, R2, R6, R7, R8, R10};

/// `AF_INET`.
pub const AF_INET: i32 = 2;
/// `AF_INET6`.
pub const AF_INET6: i32 = 10;
/// `SOCK_STREAM`.
pub const SOCK_STREAM: i32 = 1;
/// `SOCK_TYPE_MASK`: the type bits of `socket(2)`'s `type`.
pub const SOCK_TYPE_MASK: i32 = 0xf;
/// `IPPROTO_TCP`.
pub const IPPROTO_TCP: i32 = 6;
/// `IPPROTO_MPTCP`.
pub const IPPROTO_MPTCP: i32 = 262;

/// Mode: change nothing.
pub const MODE_OFF: u32 = 0;
/// Mode: every TCP socket becomes MPTCP.
pub const MODE_ALL: u32 = 1;
/// Mode: only in the cgroups of the cgroups map and below them.
pub const MODE_CGROUPS: u32 = 2;

/// Deepest ancestor level looked up (cgroups below it still match by
/// their own id).
pub const MAX_ANCESTOR_LEVEL: i32 = 8;

/// `BPF_FUNC_map_lookup_elem`.
const HELPER_MAP_LOOKUP: i32 = 1;
/// `BPF_FUNC_get_current_cgroup_id`.
const HELPER_CGROUP_ID: i32 = 80;
/// `BPF_FUNC_get_current_ancestor_cgroup_id`.
const HELPER_ANCESTOR_CGROUP_ID: i32 = 123;

/// The program, with the given map file descriptors in its map loads.
pub fn mptcpify(config_fd: i32, cgroups_fd: i32) -> Result<Vec<Insn>, AsmError> {
    let mut a = Asm::new();
    let fam = a.label();
    let proto = a.label();
    let mptcp = a.label();
    let keep = a.label();

    a.ldx_dw(R6, R1, 0) // family
        .ldx_dw(R7, R1, 8) // type
        .ldx_dw(R8, R1, 16) // protocol
        .jeq32_imm(R6, AF_INET, fam)
        .jne32_imm(R6, AF_INET6, keep);
    a.bind(fam)
        .and32_imm(R7, SOCK_TYPE_MASK)
        .jne32_imm(R7, SOCK_STREAM, keep)
        .jeq32_imm(R8, 0, proto)
        .jne32_imm(R8, IPPROTO_TCP, keep);
    a.bind(proto)
        .st_w(R10, -4, 0) // config key 0
        .mov64(R2, R10)
        .add64_imm(R2, -4)
        .ld_map_fd(R1, config_fd)
        .call(HELPER_MAP_LOOKUP)
        .jeq_imm(R0, 0, keep)
        .ldx_w(R1, R0, 0) // mode
        .jeq32_imm(R1, MODE_ALL as i32, mptcp)
        .jne32_imm(R1, MODE_CGROUPS as i32, keep)
        .call(HELPER_CGROUP_ID);
    lookup_cgroup(&mut a, cgroups_fd, mptcp);
    for level in 1..=MAX_ANCESTOR_LEVEL {
        a.mov64_imm(R1, level)
            .call(HELPER_ANCESTOR_CGROUP_ID)
            .jeq_imm(R0, 0, keep);
        lookup_cgroup(&mut a, cgroups_fd, mptcp);
    }
    a.ja(keep);
    a.bind(mptcp).mov32_imm(R0, IPPROTO_MPTCP).exit();
    a.bind(keep).mov32(R0, R8).exit();
    a.finish()
}

/// Looks the cgroup id in `r0` up in the cgroups map; jumps to `found` on
/// a hit.
fn lookup_cgroup(a: &mut Asm, cgroups_fd: i32, found: crate::insn::Label) {
    a.stx_dw(R10, -16, R0)
        .mov64(R2, R10)
        .add64_imm(R2, -16)
        .ld_map_fd(R1, cgroups_fd)
        .call(HELPER_MAP_LOOKUP)
        .jne_imm(R0, 0, found);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assembles_with_both_maps_and_both_exits() {
        let p = mptcpify(41, 42).unwrap();
        // 9 (args and checks) + 10 (config lookup and mode) + 1 (cgroup id)
        // + 7 (lookup) + 8 × (3 + 7) (ancestors) + 1 (goto) + 4 (exits).
        assert_eq!(p.len(), 9 + 10 + 1 + 7 + 80 + 1 + 4);
        let map_loads: Vec<i32> = p
            .iter()
            .filter(|i| i.code == 0x18 && i.src == 1)
            .map(|i| i.imm)
            .collect();
        assert_eq!(map_loads[0], 41);
        assert!(map_loads[1..].iter().all(|fd| *fd == 42));
        assert_eq!(map_loads.len(), 2 + MAX_ANCESTOR_LEVEL as usize);
        assert_eq!(p.iter().filter(|i| i.code == 0x95).count(), 2);
        // Every jump lands inside the program.
        for (at, i) in p.iter().enumerate() {
            let class = i.code & 0x07;
            let op = i.code & 0xf0;
            if (class == 0x05 || class == 0x06) && op != 0x80 && op != 0x90 {
                let to = at as i64 + 1 + i64::from(i.off);
                assert!(
                    to > at as i64 && to < p.len() as i64,
                    "insn {at} jumps to {to}"
                );
            }
        }
    }
}
