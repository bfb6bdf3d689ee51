//! The restricted unpickler: a stack machine for the opcodes torch.save emits, with caps on
//! sizes, nesting and work, that never executes anything.

use std::collections::HashMap;
use std::io::{self, Read};
use std::path::Path;
use std::rc::Rc;

use super::error::{io_err, malformed, truncated, Result};
use super::pickle_values::{resolve_global, Map, Seq, Val};
use super::tensor::Dtype;
use super::WeightsError;

/// Cap on nesting; torch state dicts nest about 4 deep. Keeps drops and checks non-recursive-safe.
const MAX_DEPTH: u32 = 64;
/// Cap on work (opcodes plus elements copied), so a crafted pickle cannot spin for minutes.
const MAX_WORK: u64 = 50_000_000;

/// Byte source for the unpickler that knows how many bytes may still follow, so every length
/// field is checked before a buffer is allocated.
pub(super) struct Src<'a, R: Read> {
    pub(super) r: &'a mut R,
    pub(super) pos: u64,
    pub(super) end: u64,
}

impl<R: Read> Src<'_, R> {
    fn bytes(&mut self, n: u64, path: &Path, what: &str) -> Result<Vec<u8>> {
        if n > self.end - self.pos {
            return Err(truncated(
                path,
                format!(
                    "the pickle data ends at byte {}, {} bytes short of the {what} that starts there",
                    self.end,
                    n - (self.end - self.pos)
                ),
            ));
        }
        let mut v = vec![0u8; n as usize];
        self.r.read_exact(&mut v).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                truncated(path, "pickle data ends early")
            } else {
                io_err(path, "read")(e)
            }
        })?;
        self.pos += n;
        Ok(v)
    }
    fn array<const N: usize>(&mut self, path: &Path, what: &str) -> Result<[u8; N]> {
        let v = self.bytes(N as u64, path, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(&v);
        Ok(a)
    }
    fn u8(&mut self, path: &Path) -> Result<u8> {
        Ok(self.array::<1>(path, "opcode")?[0])
    }
    /// A newline-terminated line (GLOBAL's module and name), at most 256 bytes.
    fn line(&mut self, path: &Path) -> Result<String> {
        let mut s = Vec::new();
        loop {
            let b = self.u8(path)?;
            if b == b'\n' {
                break;
            }
            if s.len() >= 256 {
                return Err(malformed(path, "GLOBAL name longer than 256 bytes"));
            }
            s.push(b);
        }
        String::from_utf8(s).map_err(|_| malformed(path, "GLOBAL name is not UTF-8"))
    }
}

pub(super) struct Unpickler<'p> {
    path: &'p Path,
    stack: Vec<Val>,
    marks: Vec<usize>,
    memo: HashMap<u32, Val>,
    work: u64,
    /// Root storages seen in persistent ids: key -> (dtype, element count).
    pub(super) storages: HashMap<String, (Dtype, u64)>,
}

impl<'p> Unpickler<'p> {
    pub(super) fn new(path: &'p Path) -> Self {
        Unpickler {
            path,
            stack: Vec::new(),
            marks: Vec::new(),
            memo: HashMap::new(),
            work: 0,
            storages: HashMap::new(),
        }
    }

    pub(super) fn bad(&self, detail: impl Into<String>) -> WeightsError {
        malformed(self.path, format!("bad pickle: {}", detail.into()))
    }

    pub(super) fn charge(&mut self, units: u64) -> Result<()> {
        self.work = self.work.saturating_add(units);
        if self.work > MAX_WORK {
            return Err(self.bad("too much work (crafted pickle?)"));
        }
        Ok(())
    }

    fn pop(&mut self) -> Result<Val> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            return Err(self.bad("stack underflow"));
        }
        self.stack.pop().ok_or_else(|| self.bad("stack underflow"))
    }

    fn pop_mark(&mut self) -> Result<Vec<Val>> {
        let m = self.marks.pop().ok_or_else(|| self.bad("MARK missing"))?;
        if m > self.stack.len() {
            return Err(self.bad("MARK beyond stack"));
        }
        Ok(self.stack.split_off(m))
    }

    fn seq(&self, items: Vec<Val>) -> Result<Rc<Seq>> {
        let depth = 1 + items.iter().map(Val::depth).max().unwrap_or(0);
        if depth > MAX_DEPTH {
            return Err(self.bad(format!("values nest deeper than {MAX_DEPTH} levels")));
        }
        Ok(Rc::new(Seq { items, depth }))
    }

    pub(super) fn map(&self, items: Vec<(Val, Val)>) -> Result<Rc<Map>> {
        let depth = 1 + items.iter().map(|(k, v)| k.depth().max(v.depth())).max().unwrap_or(0);
        if depth > MAX_DEPTH {
            return Err(self.bad(format!("values nest deeper than {MAX_DEPTH} levels")));
        }
        Ok(Rc::new(Map { items, depth }))
    }

    fn append(&mut self, items: Vec<Val>) -> Result<()> {
        let add = 1 + items.iter().map(Val::depth).max().unwrap_or(0);
        let shared = match self.stack.last() {
            Some(Val::List(s)) => {
                if Rc::strong_count(s) > 1 {
                    s.items.len() as u64
                } else {
                    0
                }
            }
            _ => return Err(self.bad("APPEND to something that is not a list")),
        };
        self.charge(shared + items.len() as u64)?;
        if add > MAX_DEPTH {
            return Err(self.bad(format!("values nest deeper than {MAX_DEPTH} levels")));
        }
        if let Some(Val::List(s)) = self.stack.last_mut() {
            let s = Rc::make_mut(s);
            s.items.extend(items);
            s.depth = s.depth.max(add);
        }
        Ok(())
    }

    fn set_items(&mut self, flat: Vec<Val>) -> Result<()> {
        if !flat.len().is_multiple_of(2) {
            return Err(self.bad("SETITEMS with an odd number of values"));
        }
        let mut pairs = Vec::with_capacity(flat.len() / 2);
        let mut it = flat.into_iter();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            pairs.push((k, v));
        }
        let add = 1 + pairs.iter().map(|(k, v)| k.depth().max(v.depth())).max().unwrap_or(0);
        let shared = match self.stack.last() {
            Some(Val::Dict(m)) => {
                if Rc::strong_count(m) > 1 {
                    m.items.len() as u64
                } else {
                    0
                }
            }
            _ => return Err(self.bad("SETITEM on something that is not a dict")),
        };
        self.charge(shared + pairs.len() as u64)?;
        if add > MAX_DEPTH {
            return Err(self.bad(format!("values nest deeper than {MAX_DEPTH} levels")));
        }
        if let Some(Val::Dict(m)) = self.stack.last_mut() {
            let m = Rc::make_mut(m);
            m.items.extend(pairs);
            m.depth = m.depth.max(add);
        }
        Ok(())
    }

    fn global(&self, module: &str, name: &str) -> Result<Val> {
        resolve_global(module, name).map(Val::Global).ok_or_else(|| WeightsError::ForbiddenGlobal {
            path: self.path.to_path_buf(),
            global: format!("{module}.{name}"),
        })
    }

    /// Run one pickle (up to STOP) and return its value. The memo is per pickle.
    pub(super) fn run<R: Read>(&mut self, src: &mut Src<'_, R>) -> Result<Val> {
        self.stack.clear();
        self.marks.clear();
        self.memo.clear();
        let path = self.path;
        loop {
            self.charge(1)?;
            let at = src.pos;
            let op = src.u8(path)?;
            match op {
                0x80 => {
                    // PROTO
                    let v = src.u8(path)?;
                    if v > 5 {
                        return Err(self.bad(format!("pickle protocol {v}")));
                    }
                }
                0x95 => {
                    src.array::<8>(path, "frame length")?; // FRAME: only a read-ahead hint
                }
                b'.' => return self.pop(),
                b'(' => self.marks.push(self.stack.len()),
                b'}' => self.stack.push(Val::Dict(Rc::new(Map::default()))),
                b']' => self.stack.push(Val::List(Rc::new(Seq { items: vec![], depth: 1 }))),
                b')' => self.stack.push(Val::Tuple(Rc::new(Seq { items: vec![], depth: 1 }))),
                b'N' => self.stack.push(Val::None),
                0x88 => self.stack.push(Val::Bool(true)),
                0x89 => self.stack.push(Val::Bool(false)),
                b'K' => {
                    let v = src.u8(path)?;
                    self.stack.push(Val::Int(v as i128))
                }
                b'M' => {
                    let v = u16::from_le_bytes(src.array(path, "BININT2")?);
                    self.stack.push(Val::Int(v as i128))
                }
                b'J' => {
                    let v = i32::from_le_bytes(src.array(path, "BININT")?);
                    self.stack.push(Val::Int(v as i128))
                }
                0x8a | 0x8b => {
                    // LONG1 / LONG4: little-endian two's complement of n bytes
                    let n = if op == 0x8a {
                        src.u8(path)? as i64
                    } else {
                        i32::from_le_bytes(src.array(path, "LONG4")?) as i64
                    };
                    if !(0..=16).contains(&n) {
                        return Err(self.bad(format!("integer of {n} bytes at byte {at}")));
                    }
                    let b = src.bytes(n as u64, path, "long")?;
                    let mut v: i128 = 0;
                    for (i, &byte) in b.iter().enumerate() {
                        v |= (byte as i128) << (8 * i);
                    }
                    if n > 0 && n < 16 && b[n as usize - 1] & 0x80 != 0 {
                        v -= 1i128 << (8 * n); // sign-extend
                    }
                    self.stack.push(Val::Int(v))
                }
                b'G' => {
                    let v = f64::from_be_bytes(src.array(path, "BINFLOAT")?);
                    self.stack.push(Val::Float(v))
                }
                b'X' | 0x8c | 0x8d | b'T' | b'U' => {
                    let n = match op {
                        b'X' => u32::from_le_bytes(src.array(path, "string length")?) as u64,
                        0x8d => u64::from_le_bytes(src.array(path, "string length")?),
                        b'T' => {
                            let n = i32::from_le_bytes(src.array(path, "string length")?);
                            u64::try_from(n).map_err(|_| self.bad("negative string length"))?
                        }
                        _ => src.u8(path)? as u64,
                    };
                    let b = src.bytes(n, path, "string")?;
                    self.charge(n / 64)?;
                    let s: String = if op == b'T' || op == b'U' {
                        b.iter().map(|&c| c as char).collect() // Python 2 str: bytes, read as latin-1
                    } else {
                        String::from_utf8(b).map_err(|_| self.bad(format!("invalid UTF-8 in string at byte {at}")))?
                    };
                    self.stack.push(Val::Str(s.into()))
                }
                b'B' | b'C' | 0x8e => {
                    let n = match op {
                        b'B' => u32::from_le_bytes(src.array(path, "bytes length")?) as u64,
                        0x8e => u64::from_le_bytes(src.array(path, "bytes length")?),
                        _ => src.u8(path)? as u64,
                    };
                    src.bytes(n, path, "bytes")?;
                    self.charge(n / 64)?;
                    self.stack.push(Val::Bytes)
                }
                b'q' | b'r' | 0x94 => {
                    let key = match op {
                        b'q' => src.u8(path)? as u32,
                        b'r' => u32::from_le_bytes(src.array(path, "memo key")?),
                        _ => self.memo.len() as u32,
                    };
                    let top = self.stack.last().cloned().ok_or_else(|| self.bad("memoize on an empty stack"))?;
                    self.memo.insert(key, top);
                }
                b'h' | b'j' => {
                    let key = if op == b'h' {
                        src.u8(path)? as u32
                    } else {
                        u32::from_le_bytes(src.array(path, "memo key")?)
                    };
                    let v = self
                        .memo
                        .get(&key)
                        .cloned()
                        .ok_or_else(|| self.bad(format!("memo key {key} unset at byte {at}")))?;
                    self.stack.push(v)
                }
                b'0' => {
                    self.pop()?;
                }
                b'1' => {
                    self.pop_mark()?;
                }
                b'2' => {
                    let top = self.stack.last().cloned().ok_or_else(|| self.bad("DUP on an empty stack"))?;
                    self.stack.push(top)
                }
                b't' => {
                    let items = self.pop_mark()?;
                    let s = self.seq(items)?;
                    self.stack.push(Val::Tuple(s))
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    let mut items = Vec::with_capacity(n);
                    for _ in 0..n {
                        items.push(self.pop()?);
                    }
                    items.reverse();
                    let s = self.seq(items)?;
                    self.stack.push(Val::Tuple(s))
                }
                b'l' => {
                    let items = self.pop_mark()?;
                    let s = self.seq(items)?;
                    self.stack.push(Val::List(s))
                }
                b'd' => {
                    let flat = self.pop_mark()?;
                    self.stack.push(Val::Dict(Rc::new(Map::default())));
                    self.set_items(flat)?;
                }
                b'a' => {
                    let v = self.pop()?;
                    self.append(vec![v])?;
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    self.append(items)?;
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    self.set_items(vec![k, v])?;
                }
                b'u' => {
                    let flat = self.pop_mark()?;
                    self.set_items(flat)?;
                }
                b'c' => {
                    let module = src.line(path)?;
                    let name = src.line(path)?;
                    let g = self.global(&module, &name)?;
                    self.stack.push(g)
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    match (module, name) {
                        (Val::Str(m), Val::Str(n)) => {
                            let g = self.global(&m, &n)?;
                            self.stack.push(g)
                        }
                        _ => return Err(self.bad("STACK_GLOBAL needs two strings")),
                    }
                }
                b'R' | 0x81 => {
                    // REDUCE / NEWOBJ: callable(*args)
                    let args = self.pop()?;
                    let f = self.pop()?;
                    let (Val::Global(g), Val::Tuple(args)) = (&f, &args) else {
                        return Err(self.bad(format!("call of {} at byte {at}", f.brief())));
                    };
                    let v = self.call(*g, &args.items)?;
                    self.stack.push(v)
                }
                b'b' => {
                    let state = self.pop()?;
                    let obj = self.pop()?;
                    let v = self.build(obj, state)?;
                    self.stack.push(v)
                }
                b'Q' => {
                    let pid = self.pop()?;
                    let v = self.persistent_load(&pid)?;
                    self.stack.push(v)
                }
                _ => return Err(self.bad(format!("unsupported opcode 0x{op:02x} at byte {at}"))),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::weights::legacy::LEGACY_MAGIC;

    fn unpickle(bytes: &[u8]) -> Result<Val> {
        let p = Path::new("crafted.pkl");
        let mut vm = Unpickler::new(p);
        let mut src = Src { r: &mut &bytes[..], pos: 0, end: bytes.len() as u64 };
        vm.run(&mut src)
    }

    #[test]
    fn hostile_pickles_fail_cleanly() {
        // 100k nested tuples: refused at depth 64 instead of overflowing the stack on drop.
        let mut deep = b"\x80\x02N".to_vec();
        deep.extend(std::iter::repeat_n(0x85u8, 100_000));
        deep.push(b'.');
        assert!(matches!(unpickle(&deep), Err(WeightsError::Malformed { .. })));
        // A 4 GiB string length in a 10-byte pickle: truncated, nothing allocated.
        assert!(matches!(unpickle(b"\x80\x02X\xff\xff\xff\xff."), Err(WeightsError::Truncated { .. })));
        assert!(matches!(
            unpickle(b"\x80\x02\x8d\xff\xff\xff\xff\xff\xff\xff\xff."),
            Err(WeightsError::Truncated { .. })
        ));
        // Doubling a value through the memo: 2^60 leaves when expanded, but shared, so cheap;
        // 100 doublings nest too deep and are refused.
        for (rounds, ok) in [(60, true), (100, false)] {
            let mut bomb = b"\x80\x02]q\x00".to_vec();
            for _ in 0..rounds {
                bomb.extend_from_slice(b"h\x00h\x00\x86q\x00\x30"); // t = (t, t); memo[0] = t; pop
            }
            bomb.extend_from_slice(b"h\x00.");
            assert_eq!(unpickle(&bomb).is_ok(), ok, "{rounds} doublings");
        }
        // Re-memoising a growing list forces a copy per append: the work budget stops it.
        let mut quad = b"\x80\x02]".to_vec();
        for _ in 0..200_000 {
            quad.extend_from_slice(b"q\x00Na"); // memo[0] = list; list.append(None)
        }
        quad.push(b'.');
        assert!(matches!(unpickle(&quad), Err(WeightsError::Malformed { .. })));
        // Unknown memo key, stack underflow, unknown opcode, forbidden globals.
        assert!(matches!(unpickle(b"\x80\x02h\x07."), Err(WeightsError::Malformed { .. })));
        assert!(matches!(unpickle(b"\x80\x02a."), Err(WeightsError::Malformed { .. })));
        assert!(matches!(unpickle(b"\x80\x02\xfe."), Err(WeightsError::Malformed { .. })));
        assert!(matches!(unpickle(b"\x80\x02cbuiltins\neval\n."), Err(WeightsError::ForbiddenGlobal { .. })));
        assert!(matches!(
            unpickle(b"\x80\x02ctorch.storage\n_load_from_bytes\n."),
            Err(WeightsError::ForbiddenGlobal { .. })
        ));
        assert!(matches!(
            unpickle(b"\x80\x02\x8c\x02os\x8c\x06system\x93."),
            Err(WeightsError::ForbiddenGlobal { global, .. }) if global == "os.system"
        ));
    }

    #[test]
    fn long1_sign_extension() {
        // LONG1 of -1 (one byte 0xff) and of the legacy magic number.
        let p = Path::new("t");
        let mut vm = Unpickler::new(p);
        let neg = b"\x80\x02\x8a\x01\xff.";
        let mut src = Src { r: &mut &neg[..], pos: 0, end: neg.len() as u64 };
        assert!(matches!(vm.run(&mut src), Ok(Val::Int(-1))));
        let magic = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19.";
        let mut src = Src { r: &mut &magic[..], pos: 0, end: magic.len() as u64 };
        assert!(matches!(vm.run(&mut src), Ok(Val::Int(LEGACY_MAGIC))));
    }
}
