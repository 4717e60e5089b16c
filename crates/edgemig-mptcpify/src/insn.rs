//! eBPF instructions (`Documentation/bpf/standardization/instruction-set.rst`)
//! and a tiny assembler with forward labels, enough to write the mptcpify
//! program by hand.
//!
//! An instruction is 8 bytes: `opcode`, `dst_reg` (low nibble) and
//! `src_reg` (high nibble), a signed 16-bit `offset` and a signed 32-bit
//! `imm`. A 64-bit immediate load (`lddw`) takes two slots. Jump offsets
//! count instructions from the one after the jump.

/// A register, `r0`..`r10` (`r10` is the read-only frame pointer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reg(pub u8);

/// `r0`: return value and helper results.
pub const R0: Reg = Reg(0);
/// `r1`: first helper argument; the context pointer at entry.
pub const R1: Reg = Reg(1);
/// `r2`: second helper argument.
pub const R2: Reg = Reg(2);
/// `r6`, callee-saved (survives helper calls).
pub const R6: Reg = Reg(6);
/// `r7`, callee-saved.
pub const R7: Reg = Reg(7);
/// `r8`, callee-saved.
pub const R8: Reg = Reg(8);
/// `r10`: frame pointer (stack grows down from it, 512 bytes).
pub const R10: Reg = Reg(10);

// Instruction classes.
const BPF_LD: u8 = 0x00;
const BPF_LDX: u8 = 0x01;
const BPF_ST: u8 = 0x02;
const BPF_STX: u8 = 0x03;
const BPF_ALU: u8 = 0x04;
const BPF_JMP: u8 = 0x05;
const BPF_JMP32: u8 = 0x06;
const BPF_ALU64: u8 = 0x07;
// Sizes.
const BPF_W: u8 = 0x00;
const BPF_DW: u8 = 0x18;
// Modes.
const BPF_IMM: u8 = 0x00;
const BPF_MEM: u8 = 0x60;
// ALU operations and sources.
const BPF_ADD: u8 = 0x00;
const BPF_AND: u8 = 0x50;
const BPF_MOV: u8 = 0xb0;
const BPF_K: u8 = 0x00;
const BPF_X: u8 = 0x08;
// Jump operations.
const BPF_JA: u8 = 0x00;
const BPF_JEQ: u8 = 0x10;
const BPF_JNE: u8 = 0x50;
const BPF_CALL: u8 = 0x80;
const BPF_EXIT: u8 = 0x90;

/// `src_reg` of an `lddw` whose `imm` is a map file descriptor.
pub const BPF_PSEUDO_MAP_FD: u8 = 1;

/// One 8-byte instruction slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    /// Opcode.
    pub code: u8,
    /// Destination register.
    pub dst: u8,
    /// Source register.
    pub src: u8,
    /// Offset (jumps, memory).
    pub off: i16,
    /// Immediate.
    pub imm: i32,
}

impl Insn {
    const fn new(code: u8, dst: Reg, src: Reg, off: i16, imm: i32) -> Self {
        Self {
            code,
            dst: dst.0,
            src: src.0,
            off,
            imm,
        }
    }

    /// The kernel's encoding (`struct bpf_insn`, little-endian bitfields).
    pub fn to_bytes(self) -> [u8; 8] {
        let mut b = [0u8; 8];
        b[0] = self.code;
        b[1] = (self.src << 4) | (self.dst & 0x0f);
        b[2..4].copy_from_slice(&self.off.to_le_bytes());
        b[4..8].copy_from_slice(&self.imm.to_le_bytes());
        b
    }
}

/// A jump target, placed later with [`Asm::bind`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Label(usize);

/// Errors of assembling.
#[derive(Debug, thiserror::Error)]
pub enum AsmError {
    /// A label was jumped to but never bound.
    #[error("Label {0} is never bound")]
    Unbound(usize),
    /// A jump is too long for the 16-bit offset.
    #[error("Jump from instruction {from} to {to} is out of range")]
    OutOfRange {
        /// Index of the jump.
        from: usize,
        /// Index of the target.
        to: usize,
    },
}

/// Collects instructions; jumps name [`Label`]s resolved by [`Asm::finish`].
#[derive(Debug, Default)]
pub struct Asm {
    insns: Vec<Insn>,
    labels: Vec<Option<usize>>,
    fixups: Vec<(usize, Label)>,
}

impl Asm {
    /// An empty program.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of slots so far (the index of the next instruction).
    pub fn len(&self) -> usize {
        self.insns.len()
    }

    /// Whether nothing was emitted yet.
    pub fn is_empty(&self) -> bool {
        self.insns.is_empty()
    }

    fn push(&mut self, insn: Insn) -> &mut Self {
        self.insns.push(insn);
        self
    }

    /// A new, not yet placed label.
    pub fn label(&mut self) -> Label {
        self.labels.push(None);
        Label(self.labels.len() - 1)
    }

    /// Places `label` at the next instruction.
    pub fn bind(&mut self, label: Label) -> &mut Self {
        self.labels[label.0] = Some(self.insns.len());
        self
    }

    fn jump(&mut self, code: u8, dst: Reg, imm: i32, to: Label) -> &mut Self {
        self.fixups.push((self.insns.len(), to));
        self.push(Insn::new(code, dst, Reg(0), 0, imm))
    }

    /// `dst = *(u64 *)(src + off)`.
    pub fn ldx_dw(&mut self, dst: Reg, src: Reg, off: i16) -> &mut Self {
        self.push(Insn::new(BPF_LDX | BPF_MEM | BPF_DW, dst, src, off, 0))
    }

    /// `dst = *(u32 *)(src + off)` (zero-extended).
    pub fn ldx_w(&mut self, dst: Reg, src: Reg, off: i16) -> &mut Self {
        self.push(Insn::new(BPF_LDX | BPF_MEM | BPF_W, dst, src, off, 0))
    }

    /// `*(u32 *)(dst + off) = imm`.
    pub fn st_w(&mut self, dst: Reg, off: i16, imm: i32) -> &mut Self {
        self.push(Insn::new(BPF_ST | BPF_MEM | BPF_W, dst, Reg(0), off, imm))
    }

    /// `*(u64 *)(dst + off) = src`.
    pub fn stx_dw(&mut self, dst: Reg, off: i16, src: Reg) -> &mut Self {
        self.push(Insn::new(BPF_STX | BPF_MEM | BPF_DW, dst, src, off, 0))
    }

    /// `dst = src` (64-bit).
    pub fn mov64(&mut self, dst: Reg, src: Reg) -> &mut Self {
        self.push(Insn::new(BPF_ALU64 | BPF_MOV | BPF_X, dst, src, 0, 0))
    }

    /// `dst = imm` (64-bit, sign-extended).
    pub fn mov64_imm(&mut self, dst: Reg, imm: i32) -> &mut Self {
        self.push(Insn::new(BPF_ALU64 | BPF_MOV | BPF_K, dst, Reg(0), 0, imm))
    }

    /// `wdst = wsrc` (32-bit, upper half zeroed).
    pub fn mov32(&mut self, dst: Reg, src: Reg) -> &mut Self {
        self.push(Insn::new(BPF_ALU | BPF_MOV | BPF_X, dst, src, 0, 0))
    }

    /// `wdst = imm` (32-bit, upper half zeroed).
    pub fn mov32_imm(&mut self, dst: Reg, imm: i32) -> &mut Self {
        self.push(Insn::new(BPF_ALU | BPF_MOV | BPF_K, dst, Reg(0), 0, imm))
    }

    /// `dst += imm` (64-bit).
    pub fn add64_imm(&mut self, dst: Reg, imm: i32) -> &mut Self {
        self.push(Insn::new(BPF_ALU64 | BPF_ADD | BPF_K, dst, Reg(0), 0, imm))
    }

    /// `wdst &= imm` (32-bit, upper half zeroed).
    pub fn and32_imm(&mut self, dst: Reg, imm: i32) -> &mut Self {
        self.push(Insn::new(BPF_ALU | BPF_AND | BPF_K, dst, Reg(0), 0, imm))
    }

    /// `dst = map` as a map pointer: `lddw` with `src_reg =
    /// BPF_PSEUDO_MAP_FD` and the map's file descriptor as immediate (the
    /// kernel replaces it by the map's address at load). Two slots.
    pub fn ld_map_fd(&mut self, dst: Reg, fd: i32) -> &mut Self {
        self.push(Insn::new(
            BPF_LD | BPF_DW | BPF_IMM,
            dst,
            Reg(BPF_PSEUDO_MAP_FD),
            0,
            fd,
        ));
        self.push(Insn::new(0, Reg(0), Reg(0), 0, 0))
    }

    /// `if wdst == imm goto to` (32-bit compare).
    pub fn jeq32_imm(&mut self, dst: Reg, imm: i32, to: Label) -> &mut Self {
        self.jump(BPF_JMP32 | BPF_JEQ | BPF_K, dst, imm, to)
    }

    /// `if wdst != imm goto to` (32-bit compare).
    pub fn jne32_imm(&mut self, dst: Reg, imm: i32, to: Label) -> &mut Self {
        self.jump(BPF_JMP32 | BPF_JNE | BPF_K, dst, imm, to)
    }

    /// `if dst == imm goto to` (64-bit compare).
    pub fn jeq_imm(&mut self, dst: Reg, imm: i32, to: Label) -> &mut Self {
        self.jump(BPF_JMP | BPF_JEQ | BPF_K, dst, imm, to)
    }

    /// `if dst != imm goto to` (64-bit compare).
    pub fn jne_imm(&mut self, dst: Reg, imm: i32, to: Label) -> &mut Self {
        self.jump(BPF_JMP | BPF_JNE | BPF_K, dst, imm, to)
    }

    /// `goto to`.
    pub fn ja(&mut self, to: Label) -> &mut Self {
        self.jump(BPF_JMP | BPF_JA, Reg(0), 0, to)
    }

    /// Calls helper number `helper` (arguments in `r1`..`r5`, result in
    /// `r0`; `r1`..`r5` are clobbered).
    pub fn call(&mut self, helper: i32) -> &mut Self {
        self.push(Insn::new(BPF_JMP | BPF_CALL, Reg(0), Reg(0), 0, helper))
    }

    /// Returns `r0`.
    pub fn exit(&mut self) -> &mut Self {
        self.push(Insn::new(BPF_JMP | BPF_EXIT, Reg(0), Reg(0), 0, 0))
    }

    /// Resolves the jumps; the finished program.
    pub fn finish(mut self) -> Result<Vec<Insn>, AsmError> {
        for (at, label) in std::mem::take(&mut self.fixups) {
            let to = self.labels[label.0].ok_or(AsmError::Unbound(label.0))?;
            let delta = to as i64 - (at as i64 + 1);
            self.insns[at].off =
                i16::try_from(delta).map_err(|_| AsmError::OutOfRange { from: at, to })?;
        }
        Ok(self.insns)
    }
}

/// The kernel's encoding of a whole program.
pub fn encode(insns: &[Insn]) -> Vec<u8> {
    insns.iter().flat_map(|i| i.to_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_like_the_kernel_headers() {
        // BPF_MOV64_IMM(BPF_REG_0, 262): b7 00 00 00 06 01 00 00.
        let mut a = Asm::new();
        a.mov64_imm(R0, 262).exit();
        let p = a.finish().unwrap();
        assert_eq!(p[0].to_bytes(), [0xb7, 0x00, 0, 0, 0x06, 0x01, 0, 0]);
        assert_eq!(p[1].to_bytes(), [0x95, 0, 0, 0, 0, 0, 0, 0]);
        // BPF_LDX_MEM(BPF_DW, BPF_REG_6, BPF_REG_1, 16): 79 16 10 00 ...
        let mut a = Asm::new();
        a.ldx_dw(R6, R1, 16);
        let p = a.finish().unwrap();
        assert_eq!(p[0].to_bytes(), [0x79, 0x16, 0x10, 0, 0, 0, 0, 0]);
        // BPF_LD_MAP_FD(BPF_REG_1, 7): 18 11 00 00 07 00 00 00, then zeros.
        let mut a = Asm::new();
        a.ld_map_fd(R1, 7);
        let bytes = encode(&a.finish().unwrap());
        assert_eq!(
            bytes,
            [0x18, 0x11, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
        );
        // BPF_STX_MEM(BPF_DW, BPF_REG_10, BPF_REG_0, -16): 7b 0a f0 ff.
        let mut a = Asm::new();
        a.stx_dw(R10, -16, R0);
        let p = a.finish().unwrap();
        assert_eq!(p[0].to_bytes(), [0x7b, 0x0a, 0xf0, 0xff, 0, 0, 0, 0]);
    }

    #[test]
    fn labels_resolve_forward_and_backward() {
        let mut a = Asm::new();
        let end = a.label();
        let top = a.label();
        a.bind(top);
        a.jeq32_imm(R6, 2, end); // 0 -> 3: off 2
        a.mov32_imm(R0, 1); // 1
        a.ja(top); // 2 -> 0: off -3
        a.bind(end);
        a.exit(); // 3
        let p = a.finish().unwrap();
        assert_eq!(p[0].off, 2);
        assert_eq!(p[0].code, 0x16);
        assert_eq!(p[2].off, -3);
        let mut a = Asm::new();
        let never = a.label();
        a.ja(never);
        assert!(matches!(a.finish(), Err(AsmError::Unbound(_))));
    }
}
