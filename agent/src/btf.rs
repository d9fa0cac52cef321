//! Struct member offsets from the running kernel's BTF.
//!
//! aya 0.14 cannot emit CO-RE relocations from Rust, so a program that reads
//! a kernel struct gets the field's offset as a global set at load time
//! (DESIGN.md). aya's BTF type accessors are private; this is the small part
//! of the format (kernel `Documentation/bpf/btf.rst`) needed to find a member.

use std::{collections::HashMap, path::Path};

/// Where the kernel exposes its own BTF.
pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

const MAGIC: u16 = 0xeb9f;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
const KIND_RESTRICT: u32 = 11;
const KIND_TYPE_TAG: u32 = 18;

/// Why an offset could not be found.
#[derive(Debug, thiserror::Error)]
pub enum BtfError {
    /// The BTF file could not be read (no `CONFIG_DEBUG_INFO_BTF`?).
    #[error(
        "cannot read kernel BTF at {path}: {source} (the kernel needs CONFIG_DEBUG_INFO_BTF=y)"
    )]
    Read {
        /// The file that was read.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The data is not BTF or is cut short.
    #[error("malformed BTF: {0}")]
    Malformed(&'static str),
    /// No struct or union of that name.
    #[error("kernel BTF has no struct {0}")]
    NoStruct(String),
    /// The struct has no such member (the kernel changed it).
    #[error("kernel struct {structure} has no member {member}")]
    NoMember {
        /// The struct searched.
        structure: String,
        /// The member asked for.
        member: String,
    },
}

/// One parsed type: what is needed to walk struct members.
#[derive(Clone, Debug)]
struct Type {
    kind: u32,
    name: u32,
    /// For modifiers and typedefs: the type referred to.
    referred: u32,
    /// For structs and unions: (name, type, bit offset).
    members: Vec<(u32, u32, u32)>,
}

/// Parsed BTF with an index of structs by name.
pub struct Btf {
    types: Vec<Type>,
    strings: Vec<u8>,
    structs: HashMap<String, u32>,
}

impl Btf {
    /// Reads the running kernel's BTF.
    pub fn from_kernel() -> Result<Self, BtfError> {
        Self::from_file(Path::new(VMLINUX_BTF))
    }

    /// Reads BTF from a file.
    pub fn from_file(path: &Path) -> Result<Self, BtfError> {
        let data = std::fs::read(path).map_err(|source| BtfError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&data)
    }

    /// Parses raw (little-endian) BTF.
    pub fn parse(data: &[u8]) -> Result<Self, BtfError> {
        let u16_at = |o: usize| data.get(o..o + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
        let u32_at = |o: usize| {
            data.get(o..o + 4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        };
        if u16_at(0) != Some(MAGIC) {
            return Err(BtfError::Malformed("bad magic (not little-endian BTF)"));
        }
        let field = |o| {
            u32_at(o)
                .map(|v| v as usize)
                .ok_or(BtfError::Malformed("short header"))
        };
        let (hdr_len, type_off, type_len, str_off, str_len) =
            (field(4)?, field(8)?, field(12)?, field(16)?, field(20)?);
        let types_at = hdr_len + type_off;
        let strings = data
            .get(hdr_len + str_off..hdr_len + str_off + str_len)
            .ok_or(BtfError::Malformed("string section out of bounds"))?
            .to_vec();
        let end = types_at + type_len;
        if end > data.len() {
            return Err(BtfError::Malformed("type section out of bounds"));
        }
        // Type ids start at 1; id 0 is void.
        let mut types = vec![Type {
            kind: 0,
            name: 0,
            referred: 0,
            members: Vec::new(),
        }];
        let mut at = types_at;
        while at < end {
            let (Some(name), Some(info), Some(size_or_type)) =
                (u32_at(at), u32_at(at + 4), u32_at(at + 8))
            else {
                return Err(BtfError::Malformed("truncated type"));
            };
            at += 12;
            let kind = (info >> 24) & 0x1f;
            let vlen = (info & 0xffff) as usize;
            let kind_flag = info >> 31 == 1;
            let mut ty = Type {
                kind,
                name,
                referred: size_or_type,
                members: Vec::new(),
            };
            at += match kind {
                1 | 14 | 17 => 4, // int, var, decl_tag
                3 => 12,          // array
                KIND_STRUCT | KIND_UNION => {
                    for i in 0..vlen {
                        let m = at + i * 12;
                        let (Some(n), Some(t), Some(off)) =
                            (u32_at(m), u32_at(m + 4), u32_at(m + 8))
                        else {
                            return Err(BtfError::Malformed("truncated member"));
                        };
                        // With kind_flag the top 8 bits hold a bitfield size.
                        let bits = if kind_flag { off & 0x00ff_ffff } else { off };
                        ty.members.push((n, t, bits));
                    }
                    vlen * 12
                }
                6 | 13 => vlen * 8,   // enum, func_proto
                15 | 19 => vlen * 12, // datasec, enum64
                _ => 0,
            };
            types.push(ty);
        }
        let mut btf = Self {
            types,
            strings,
            structs: HashMap::new(),
        };
        for (id, ty) in btf.types.iter().enumerate() {
            if ty.kind == KIND_STRUCT && ty.name != 0 {
                let name = btf.string(ty.name).to_owned();
                btf.structs.entry(name).or_insert(id as u32);
            }
        }
        Ok(btf)
    }

    fn string(&self, offset: u32) -> &str {
        let rest = self.strings.get(offset as usize..).unwrap_or_default();
        let len = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
        std::str::from_utf8(&rest[..len]).unwrap_or("")
    }

    /// Follows typedefs and qualifiers to the underlying type id.
    fn resolve(&self, mut id: u32) -> u32 {
        for _ in 0..32 {
            match self.types.get(id as usize) {
                Some(t)
                    if matches!(
                        t.kind,
                        KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG
                    ) =>
                {
                    id = t.referred
                }
                _ => break,
            }
        }
        id
    }

    /// Byte offset of `path` (members of nested structs, e.g. `["bi_iter",
    /// "bi_size"]`) inside `struct structure`. Members of anonymous structs
    /// and unions are found as the kernel's C code sees them.
    pub fn member_offset(&self, structure: &str, path: &[&str]) -> Result<u64, BtfError> {
        let mut id = *self
            .structs
            .get(structure)
            .ok_or_else(|| BtfError::NoStruct(structure.to_owned()))?;
        let mut bits = 0u64;
        for member in path {
            let (off, ty) = self
                .find_member(id, member, 0)
                .ok_or_else(|| BtfError::NoMember {
                    structure: structure.to_owned(),
                    member: path.join("."),
                })?;
            bits += off;
            id = self.resolve(ty);
        }
        Ok(bits / 8)
    }

    /// (bit offset, type id) of `name` in struct/union `id`, searching
    /// anonymous members; `depth` bounds the recursion.
    fn find_member(&self, id: u32, name: &str, depth: u32) -> Option<(u64, u32)> {
        let ty = self.types.get(self.resolve(id) as usize)?;
        if depth > 8 || !matches!(ty.kind, KIND_STRUCT | KIND_UNION) {
            return None;
        }
        for &(n, t, off) in &ty.members {
            if n == 0 {
                if let Some((inner, ty)) = self.find_member(t, name, depth + 1) {
                    return Some((u64::from(off) + inner, ty));
                }
            } else if self.string(n) == name {
                return Some((u64::from(off), t));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds BTF for: struct inner { int a; int b; }; struct outer { int x;
    /// union { int y; }; struct inner in; }.
    fn sample() -> Vec<u8> {
        let strings = b"\0int\0a\0b\0inner\0x\0y\0outer\0in\0";
        let s = |name: &str| {
            let needle = format!("\0{name}\0");
            (strings
                .windows(needle.len())
                .position(|w| w == needle.as_bytes())
                .unwrap()
                + 1) as u32
        };
        let mut types = Vec::new();
        let mut push = |words: &[u32]| {
            words
                .iter()
                .for_each(|w| types.extend_from_slice(&w.to_le_bytes()))
        };
        push(&[s("int"), 1 << 24, 4, 32]); // 1: int
        push(&[s("inner"), (4 << 24) | 2, 8, s("a"), 1, 0, s("b"), 1, 32]); // 2
        push(&[0, (5 << 24) | 1, 4, s("y"), 1, 0]); // 3: anonymous union
        push(&[
            s("outer"),
            (4 << 24) | 3,
            16,
            s("x"),
            1,
            0,
            0,
            3,
            32,
            s("in"),
            2,
            64,
        ]); // 4
        let mut data = Vec::new();
        for w in [
            u32::from(MAGIC) | (1 << 16),
            24,
            0,
            types.len() as u32,
            types.len() as u32,
            strings.len() as u32,
        ] {
            data.extend_from_slice(&w.to_le_bytes());
        }
        data.extend_from_slice(&types);
        data.extend_from_slice(strings);
        data
    }

    #[test]
    fn finds_nested_and_anonymous_members() {
        let btf = Btf::parse(&sample()).unwrap();
        assert_eq!(btf.member_offset("outer", &["x"]).unwrap(), 0);
        assert_eq!(btf.member_offset("outer", &["y"]).unwrap(), 4);
        assert_eq!(btf.member_offset("outer", &["in", "b"]).unwrap(), 12);
        assert!(matches!(
            btf.member_offset("outer", &["z"]),
            Err(BtfError::NoMember { .. })
        ));
        assert!(matches!(
            btf.member_offset("nope", &["x"]),
            Err(BtfError::NoStruct(_))
        ));
    }

    #[test]
    fn refuses_garbage_without_panicking() {
        assert!(Btf::parse(b"").is_err());
        assert!(Btf::parse(&[0x9f, 0xeb, 1, 0, 24, 0, 0, 0]).is_err());
        let mut data = sample();
        data.truncate(40);
        assert!(Btf::parse(&data).is_err());
    }

    #[test]
    fn missing_btf_says_which_kernel_option() {
        let err = Btf::from_file(Path::new("/nonexistent/vmlinux"))
            .err()
            .expect("no file")
            .to_string();
        assert!(err.contains("CONFIG_DEBUG_INFO_BTF"), "{err}");
    }

    #[test]
    fn reads_this_kernels_request_struct() {
        // Every machine this project runs on has BTF (DESIGN.md); if this
        // fails, the block probes cannot work either.
        let btf = Btf::from_kernel().expect("kernel BTF");
        let off = btf.member_offset("request", &["cmd_flags"]).unwrap();
        assert!(off > 0 && off < 4096, "implausible offset {off}");
    }
}
