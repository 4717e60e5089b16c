//! A minimal reader of BTF (BPF Type Format, `Documentation/bpf/btf.rst`),
//! enough to find the type id of a kernel function in
//! `/sys/kernel/btf/vmlinux`: the header, the type section and the string
//! section.
//!
//! Layout: a header (`magic 0xeb9f`, version 1, `hdr_len`, then the offset
//! and length of the type and string sections, counted from the end of the
//! header). The type section is a sequence of `struct btf_type` (12 bytes:
//! `name_off`, `info`, `size`/`type`) each followed by kind-specific data
//! whose length depends on the kind and on `vlen` (the low 16 bits of
//! `info`); the kind is bits 24..29 of `info`. Types are numbered from 1 in
//! that order (0 is `void`), so finding an id means walking every type and
//! computing its size. Only little-endian BTF (the x86_64 kernel's) is read.

use std::path::Path;

/// Where the running kernel exposes its own BTF.
pub const VMLINUX: &str = "/sys/kernel/btf/vmlinux";

/// `BTF_MAGIC` as it reads in little-endian byte order.
const MAGIC: u16 = 0xeb9f;
/// Size of the version-1 header.
const HEADER_LEN: usize = 24;
/// Size of `struct btf_type`.
const TYPE_LEN: usize = 12;

/// Errors reading BTF.
#[derive(Debug, thiserror::Error)]
pub enum BtfError {
    /// The file could not be read.
    #[error("Cannot read BTF from {path}")]
    Read {
        /// File.
        path: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The data is not BTF this reader understands.
    #[error("Malformed BTF: {0}")]
    Malformed(String),
    /// A type of a kind this reader does not know (so its size is unknown
    /// and the walk cannot go on).
    #[error("Unknown BTF kind {kind} (type id {id})")]
    UnknownKind {
        /// The kind number.
        kind: u32,
        /// Its type id.
        id: u32,
    },
}

fn malformed(what: impl Into<String>) -> BtfError {
    BtfError::Malformed(what.into())
}

/// BTF type kinds (`BTF_KIND_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `BTF_KIND_INT`.
    Int,
    /// `BTF_KIND_PTR`.
    Ptr,
    /// `BTF_KIND_ARRAY`.
    Array,
    /// `BTF_KIND_STRUCT`.
    Struct,
    /// `BTF_KIND_UNION`.
    Union,
    /// `BTF_KIND_ENUM`.
    Enum,
    /// `BTF_KIND_FWD`.
    Fwd,
    /// `BTF_KIND_TYPEDEF`.
    Typedef,
    /// `BTF_KIND_VOLATILE`.
    Volatile,
    /// `BTF_KIND_CONST`.
    Const,
    /// `BTF_KIND_RESTRICT`.
    Restrict,
    /// `BTF_KIND_FUNC`.
    Func,
    /// `BTF_KIND_FUNC_PROTO`.
    FuncProto,
    /// `BTF_KIND_VAR`.
    Var,
    /// `BTF_KIND_DATASEC`.
    Datasec,
    /// `BTF_KIND_FLOAT`.
    Float,
    /// `BTF_KIND_DECL_TAG`.
    DeclTag,
    /// `BTF_KIND_TYPE_TAG`.
    TypeTag,
    /// `BTF_KIND_ENUM64`.
    Enum64,
}

impl Kind {
    /// The kind numbered `n`, if known.
    pub fn from_number(n: u32) -> Option<Self> {
        Some(match n {
            1 => Self::Int,
            2 => Self::Ptr,
            3 => Self::Array,
            4 => Self::Struct,
            5 => Self::Union,
            6 => Self::Enum,
            7 => Self::Fwd,
            8 => Self::Typedef,
            9 => Self::Volatile,
            10 => Self::Const,
            11 => Self::Restrict,
            12 => Self::Func,
            13 => Self::FuncProto,
            14 => Self::Var,
            15 => Self::Datasec,
            16 => Self::Float,
            17 => Self::DeclTag,
            18 => Self::TypeTag,
            19 => Self::Enum64,
            _ => return None,
        })
    }

    /// Bytes of kind-specific data after the 12-byte `struct btf_type`.
    pub fn extra_len(self, vlen: usize) -> usize {
        match self {
            // u32 encoding.
            Self::Int => 4,
            // struct btf_array { type, index_type, nelems }.
            Self::Array => 12,
            // struct btf_member { name_off, type, offset } per member.
            Self::Struct | Self::Union => 12 * vlen,
            // struct btf_enum { name_off, val } per value.
            Self::Enum => 8 * vlen,
            // struct btf_param { name_off, type } per parameter.
            Self::FuncProto => 8 * vlen,
            // struct btf_var { linkage }.
            Self::Var => 4,
            // struct btf_var_secinfo { type, offset, size } per variable.
            Self::Datasec => 12 * vlen,
            // struct btf_decl_tag { component_idx }.
            Self::DeclTag => 4,
            // struct btf_enum64 { name_off, val_lo32, val_hi32 } per value.
            Self::Enum64 => 12 * vlen,
            Self::Ptr
            | Self::Fwd
            | Self::Typedef
            | Self::Volatile
            | Self::Const
            | Self::Restrict
            | Self::Func
            | Self::Float
            | Self::TypeTag => 0,
        }
    }
}

/// One type of the type section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Type<'a> {
    /// Type id (1-based).
    pub id: u32,
    /// Its kind.
    pub kind: Kind,
    /// Offset of its name in the string section (0: anonymous).
    pub name_off: u32,
    /// `vlen`: members, values or parameters.
    pub vlen: usize,
    /// The `size` or `type` word (which one depends on the kind).
    pub size_or_type: u32,
    /// The kind-specific data after the 12-byte header.
    pub extra: &'a [u8],
}

/// Parsed BTF: borrowed sections of the blob.
#[derive(Debug, Clone, Copy)]
pub struct Btf<'a> {
    types: &'a [u8],
    strings: &'a [u8],
}

fn u16_at(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(off..off + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(off..off + 4)?.try_into().ok()?))
}

fn usize_at(b: &[u8], off: usize) -> Option<usize> {
    u32_at(b, off).and_then(|v| usize::try_from(v).ok())
}

impl<'a> Btf<'a> {
    /// Checks the header and locates the sections of `data`.
    pub fn parse(data: &'a [u8]) -> Result<Self, BtfError> {
        let magic = u16_at(data, 0).ok_or_else(|| malformed("shorter than its header"))?;
        if magic == MAGIC.swap_bytes() {
            return Err(malformed("big-endian BTF is not supported"));
        }
        if magic != MAGIC {
            return Err(malformed(format!("bad magic {magic:#06x}")));
        }
        let version = *data
            .get(2)
            .ok_or_else(|| malformed("shorter than its header"))?;
        if version != 1 {
            return Err(malformed(format!("unsupported version {version}")));
        }
        let field = |off| usize_at(data, off).ok_or_else(|| malformed("truncated header"));
        let hdr_len = field(4)?;
        if hdr_len < HEADER_LEN || hdr_len > data.len() {
            return Err(malformed(format!("bad header length {hdr_len}")));
        }
        let (type_off, type_len, str_off, str_len) =
            (field(8)?, field(12)?, field(16)?, field(20)?);
        let body = &data[hdr_len..];
        let section = |off: usize, len: usize, name: &str| {
            off.checked_add(len)
                .and_then(|end| body.get(off..end))
                .ok_or_else(|| malformed(format!("{name} section out of bounds")))
        };
        let types = section(type_off, type_len, "type")?;
        let strings = section(str_off, str_len, "string")?;
        if strings.first().is_some_and(|b| *b != 0) {
            return Err(malformed(
                "string section does not start with an empty string",
            ));
        }
        Ok(Self { types, strings })
    }

    /// The NUL-terminated string at `off` of the string section.
    pub fn name(&self, off: u32) -> Option<&'a [u8]> {
        let rest = self.strings.get(usize::try_from(off).ok()?..)?;
        let end = rest.iter().position(|b| *b == 0)?;
        Some(&rest[..end])
    }

    /// Every type, in id order; stops at the first malformed or unknown one
    /// with an error.
    pub fn types(&self) -> Types<'a> {
        Types {
            data: self.types,
            pos: 0,
            next_id: 1,
        }
    }

    /// The type with id `id`.
    pub fn type_by_id(&self, id: u32) -> Result<Option<Type<'a>>, BtfError> {
        for t in self.types() {
            let t = t?;
            if t.id == id {
                return Ok(Some(t));
            }
        }
        Ok(None)
    }

    /// The id of the first type of `kind` named `name`.
    pub fn find(&self, kind: Kind, name: &str) -> Result<Option<u32>, BtfError> {
        for t in self.types() {
            let t = t?;
            if t.kind == kind && self.name(t.name_off) == Some(name.as_bytes()) {
                return Ok(Some(t.id));
            }
        }
        Ok(None)
    }

    /// The number of parameters of the function `func_id` (a `FUNC`,
    /// whose `type` is its `FUNC_PROTO`), or `None` when `func_id` is not a
    /// function with a prototype.
    pub fn func_params(&self, func_id: u32) -> Result<Option<usize>, BtfError> {
        let Some(func) = self.type_by_id(func_id)? else {
            return Ok(None);
        };
        if func.kind != Kind::Func {
            return Ok(None);
        }
        Ok(self
            .type_by_id(func.size_or_type)?
            .filter(|p| p.kind == Kind::FuncProto)
            .map(|p| p.vlen))
    }
}

/// Iterator over the types of a [`Btf`].
#[derive(Debug, Clone)]
pub struct Types<'a> {
    data: &'a [u8],
    pos: usize,
    next_id: u32,
}

impl<'a> Iterator for Types<'a> {
    type Item = Result<Type<'a>, BtfError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.pos >= self.data.len() {
            return None;
        }
        let id = self.next_id;
        let item = self.read(id);
        match &item {
            Ok((_, len)) => {
                self.pos += len;
                self.next_id += 1;
            }
            // Nothing after a bad type can be located: end the walk.
            Err(_) => self.pos = self.data.len(),
        }
        Some(item.map(|(t, _)| t))
    }
}

impl<'a> Types<'a> {
    /// Reads the type at the current position; returns it and its length.
    fn read(&self, id: u32) -> Result<(Type<'a>, usize), BtfError> {
        let d = self.data;
        let p = self.pos;
        let truncated = || malformed(format!("type {id} truncated"));
        let name_off = u32_at(d, p).ok_or_else(truncated)?;
        let info = u32_at(d, p + 4).ok_or_else(truncated)?;
        let size_or_type = u32_at(d, p + 8).ok_or_else(truncated)?;
        let number = (info >> 24) & 0x1f;
        let kind = Kind::from_number(number).ok_or(BtfError::UnknownKind { kind: number, id })?;
        let vlen = (info & 0xffff) as usize;
        let extra_len = kind.extra_len(vlen);
        let start = p + TYPE_LEN;
        let extra = d.get(start..start + extra_len).ok_or_else(truncated)?;
        Ok((
            Type {
                id,
                kind,
                name_off,
                vlen,
                size_or_type,
                extra,
            },
            TYPE_LEN + extra_len,
        ))
    }
}

/// Reads a BTF file (normally [`VMLINUX`]).
pub fn read(path: &Path) -> Result<Vec<u8>, BtfError> {
    std::fs::read(path).map_err(|source| BtfError::Read {
        path: path.display().to_string(),
        source,
    })
}

/// The id of the function `name` in the BTF file at `path`, with its
/// parameter count; `None` when the kernel has no such function.
pub fn find_func(path: &Path, name: &str) -> Result<Option<(u32, usize)>, BtfError> {
    let data = read(path)?;
    let btf = Btf::parse(&data)?;
    let Some(id) = btf.find(Kind::Func, name)? else {
        return Ok(None);
    };
    let params = btf.func_params(id)?.unwrap_or(0);
    Ok(Some((id, params)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a BTF blob from types (`(name, kind number, vlen,
    /// size_or_type, extra bytes)`).
    struct Blob {
        types: Vec<u8>,
        strings: Vec<u8>,
    }

    impl Blob {
        fn new() -> Self {
            Self {
                types: Vec::new(),
                strings: vec![0],
            }
        }

        fn string(&mut self, s: &str) -> u32 {
            if s.is_empty() {
                return 0;
            }
            let off = self.strings.len() as u32;
            self.strings.extend_from_slice(s.as_bytes());
            self.strings.push(0);
            off
        }

        fn add(&mut self, name: &str, kind: u32, vlen: u32, size_or_type: u32, extra: &[u8]) {
            let off = self.string(name);
            self.types.extend_from_slice(&off.to_le_bytes());
            self.types
                .extend_from_slice(&((kind << 24) | vlen).to_le_bytes());
            self.types.extend_from_slice(&size_or_type.to_le_bytes());
            self.types.extend_from_slice(extra);
        }

        fn bytes(&self) -> Vec<u8> {
            let mut out = Vec::new();
            out.extend_from_slice(&MAGIC.to_le_bytes());
            out.push(1); // version
            out.push(0); // flags
            out.extend_from_slice(&(HEADER_LEN as u32).to_le_bytes());
            out.extend_from_slice(&0u32.to_le_bytes()); // type_off
            out.extend_from_slice(&(self.types.len() as u32).to_le_bytes());
            out.extend_from_slice(&(self.types.len() as u32).to_le_bytes()); // str_off
            out.extend_from_slice(&(self.strings.len() as u32).to_le_bytes());
            out.extend_from_slice(&self.types);
            out.extend_from_slice(&self.strings);
            out
        }
    }

    /// A blob with one type of every kind, variable-length ones with
    /// several entries, so a wrong size for any kind shifts every later id.
    fn every_kind() -> Vec<u8> {
        let mut b = Blob::new();
        b.add("int", 1, 0, 4, &[0, 0, 0, 0x01]); // 1: INT
        b.add("", 2, 0, 1, &[]); // 2: PTR -> int
        b.add("", 3, 0, 0, &[0; 12]); // 3: ARRAY
        b.add("s", 4, 2, 8, &[0; 24]); // 4: STRUCT, 2 members
        b.add("u", 5, 3, 4, &[0; 36]); // 5: UNION, 3 members
        b.add("e", 6, 2, 4, &[0; 16]); // 6: ENUM, 2 values
        b.add("f", 7, 0, 0, &[]); // 7: FWD
        b.add("t", 8, 0, 1, &[]); // 8: TYPEDEF
        b.add("", 9, 0, 1, &[]); // 9: VOLATILE
        b.add("", 10, 0, 1, &[]); // 10: CONST
        b.add("", 11, 0, 2, &[]); // 11: RESTRICT
        b.add("", 13, 3, 1, &[0; 24]); // 12: FUNC_PROTO (int, int, int) -> int
        b.add("update_socket_protocol", 12, 0, 12, &[]); // 13: FUNC
        b.add("v", 14, 0, 1, &[0; 4]); // 14: VAR
        b.add(".data", 15, 2, 8, &[0; 24]); // 15: DATASEC, 2 vars
        b.add("float", 16, 0, 4, &[]); // 16: FLOAT
        b.add("tag", 17, 0, 4, &[0; 4]); // 17: DECL_TAG
        b.add("tt", 18, 0, 1, &[]); // 18: TYPE_TAG
        b.add("e64", 19, 2, 8, &[0; 24]); // 19: ENUM64, 2 values
        b.add("", 13, 0, 0, &[]); // 20: FUNC_PROTO (void)
        b.add("last", 12, 0, 20, &[]); // 21: FUNC
        b.bytes()
    }

    #[test]
    fn walks_every_kind_of_a_hand_made_blob() {
        let data = every_kind();
        let btf = Btf::parse(&data).unwrap();
        let all: Vec<Type> = btf.types().collect::<Result<_, _>>().unwrap();
        assert_eq!(all.len(), 21);
        assert_eq!(all[3].kind, Kind::Struct);
        assert_eq!(all[3].extra.len(), 24);
        assert_eq!(
            btf.find(Kind::Func, "update_socket_protocol").unwrap(),
            Some(13)
        );
        assert_eq!(btf.func_params(13).unwrap(), Some(3));
        // Found only after every earlier type was sized right.
        assert_eq!(btf.find(Kind::Func, "last").unwrap(), Some(21));
        assert_eq!(btf.func_params(21).unwrap(), Some(0));
        assert_eq!(btf.find(Kind::Func, "int").unwrap(), None);
        assert_eq!(btf.find(Kind::Int, "int").unwrap(), Some(1));
        assert_eq!(btf.func_params(1).unwrap(), None);
        assert_eq!(btf.name(0), Some(&b""[..]));
    }

    #[test]
    fn rejects_bad_blobs_without_panicking() {
        let good = every_kind();
        assert!(matches!(Btf::parse(&[]), Err(BtfError::Malformed(_))));
        let mut bad = good.clone();
        bad[0] = 0;
        assert!(Btf::parse(&bad).is_err());
        let mut big_endian = good.clone();
        big_endian.swap(0, 1);
        let err = Btf::parse(&big_endian).unwrap_err().to_string();
        assert!(err.contains("big-endian"), "{err}");
        // Sections beyond the end.
        let mut bad = good.clone();
        bad[20..24].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(Btf::parse(&bad).is_err());
        // Every truncation either fails to parse or ends the walk in an
        // error; none panics.
        for cut in 0..good.len() {
            if let Ok(btf) = Btf::parse(&good[..cut]) {
                let _ = btf.types().count();
                let _ = btf.find(Kind::Func, "last");
            }
        }
        // A type section cut inside a type: the walk reports it.
        let mut short = Blob::new();
        short.add("s", 4, 2, 8, &[0; 12]); // claims 2 members, holds 1
        let data = short.bytes();
        let btf = Btf::parse(&data).unwrap();
        assert!(matches!(
            btf.types().next(),
            Some(Err(BtfError::Malformed(_)))
        ));
        // An unknown kind stops the walk.
        let mut future = Blob::new();
        future.add("x", 31, 0, 0, &[]);
        let data = future.bytes();
        let btf = Btf::parse(&data).unwrap();
        assert!(matches!(
            btf.find(Kind::Func, "x"),
            Err(BtfError::UnknownKind { kind: 31, id: 1 })
        ));
    }

    /// The running kernel's own BTF (present on this project's hosts and
    /// on the guest kernels with the hook): the walk reaches the end, and
    /// `update_socket_protocol` is a FUNC of three parameters whose id
    /// matches what a second, independent lookup by id says.
    #[test]
    fn finds_the_hook_in_the_host_kernel_btf() {
        let path = Path::new(VMLINUX);
        if !path.exists() {
            panic!("{VMLINUX} is missing: this host kernel has no BTF");
        }
        let data = read(path).unwrap();
        let btf = Btf::parse(&data).unwrap();
        let mut count = 0u32;
        let mut funcs = 0u32;
        for t in btf.types() {
            let t = t.unwrap();
            count += 1;
            assert_eq!(t.id, count);
            if t.kind == Kind::Func {
                funcs += 1;
            }
        }
        assert!(
            count > 10_000 && funcs > 1_000,
            "{count} types, {funcs} funcs"
        );
        let (id, params) = find_func(path, "update_socket_protocol").unwrap().unwrap();
        assert_eq!(params, 3);
        let t = btf.type_by_id(id).unwrap().unwrap();
        assert_eq!(t.kind, Kind::Func);
        assert_eq!(btf.name(t.name_off), Some(&b"update_socket_protocol"[..]));
        assert_eq!(find_func(path, "edgemig_no_such_function").unwrap(), None);
    }
}
