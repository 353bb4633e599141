//! Redis Cluster routing for sharded pub/sub (sans-I/O: names and parsed replies in, shard
//! indices out; no socket).
//!
//! A Redis Cluster splits its key space into [`SLOTS`] hash slots, each owned by one primary.
//! A sharded channel lives on the shard that owns its slot: `CRC16(key) mod 16384` (the XMODEM
//! CRC), where the key is the whole channel name unless it holds a hash tag — the bytes between
//! the first `{` and the first `}` after it, when there are any — in which case only the tag is
//! hashed (Redis Cluster specification, "Hash tags"). The slot map is read from a
//! `CLUSTER SLOTS` reply, which every cluster-enabled Redis answers (6 and 7; `CLUSTER SHARDS`
//! is 7 only and says the same for primaries).

use redis::Value;

/// Hash slots in a Redis Cluster.
pub const SLOTS: usize = 16384;

/// The slot of a slot owned by nobody (a cluster being set up or resharded).
const NOBODY: u16 = u16::MAX;

/// CRC16-CCITT, XMODEM flavour (polynomial 0x1021, initial 0, no reflection): Redis Cluster's.
pub fn crc16(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &b in bytes {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// The hash slot of a key (or sharded channel name), with the hash tag rule.
pub fn key_slot(key: &[u8]) -> u16 {
    let hashed = match key.iter().position(|&b| b == b'{') {
        Some(open) => match key[open + 1..].iter().position(|&b| b == b'}') {
            Some(len) if len > 0 => &key[open + 1..open + 1 + len],
            _ => key,
        },
        None => key,
    };
    crc16(hashed) % SLOTS as u16
}

/// A primary's address: host and port.
pub type Addr = (String, u16);

/// Which primary owns each slot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlotMap {
    /// The primaries, sorted by address (so two maps of the same cluster index alike).
    nodes: Vec<Addr>,
    /// An index into `nodes` per slot, or [`NOBODY`].
    owner: Box<[u16]>,
}

/// Why a `CLUSTER SLOTS` reply was not understood.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapError {
    /// Not an array of `[start, end, [host, port, …], …]` entries.
    Shape,
    /// A slot range outside 0..16384 or backwards.
    Range,
    /// No slot is served at all.
    Empty,
}

impl SlotMap {
    /// The map from a `CLUSTER SLOTS` reply. A primary announced with no host (`""` or `"?"`:
    /// its endpoint is unknown) is taken to be on `seed_host`, the host that answered.
    pub fn from_cluster_slots(reply: &Value, seed_host: &str) -> Result<SlotMap, MapError> {
        let Value::Array(ranges) = reply else {
            return Err(MapError::Shape);
        };
        let mut nodes: Vec<Addr> = Vec::new();
        let mut spans = Vec::with_capacity(ranges.len());
        for range in ranges {
            let Value::Array(fields) = range else {
                return Err(MapError::Shape);
            };
            let [
                Value::Int(start),
                Value::Int(end),
                Value::Array(primary),
                ..,
            ] = &fields[..]
            else {
                return Err(MapError::Shape);
            };
            let [host, Value::Int(port), ..] = &primary[..] else {
                return Err(MapError::Shape);
            };
            let host = match host {
                Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
                Value::SimpleString(s) => s.clone(),
                _ => return Err(MapError::Shape),
            };
            let host = match host.as_str() {
                "" | "?" => seed_host.to_owned(),
                _ => host,
            };
            let port = u16::try_from(*port).map_err(|_| MapError::Shape)?;
            if !(0 <= *start && start <= end && *end < SLOTS as i64) {
                return Err(MapError::Range);
            }
            nodes.push((host.clone(), port));
            spans.push((*start as usize, *end as usize, (host, port)));
        }
        nodes.sort();
        nodes.dedup();
        if nodes.is_empty() {
            return Err(MapError::Empty);
        }
        let mut owner = vec![NOBODY; SLOTS].into_boxed_slice();
        for (start, end, addr) in spans {
            let i = nodes.binary_search(&addr).expect("listed") as u16;
            owner[start..=end].fill(i);
        }
        Ok(SlotMap { nodes, owner })
    }

    /// The primaries, each a shard, in index order.
    pub fn nodes(&self) -> &[Addr] {
        &self.nodes
    }

    /// The shard (an index into [`SlotMap::nodes`]) owning a slot, if any.
    pub fn owner_of_slot(&self, slot: u16) -> Option<usize> {
        match self.owner.get(slot as usize) {
            Some(&i) if i != NOBODY => Some(i as usize),
            _ => None,
        }
    }

    /// The address of the shard owning a key (or sharded channel), if any.
    pub fn owner(&self, key: &[u8]) -> Option<&Addr> {
        self.owner_of_slot(key_slot(key)).map(|i| &self.nodes[i])
    }

    /// The name `base:n` for the smallest `n` whose slot `addr` owns: a channel of its own on
    /// that shard (a node's probe channel per shard). `None` when `addr` owns no slot that such
    /// a name reaches (for instance when `base` holds a hash tag of another shard's).
    pub fn name_on(&self, base: &str, addr: &Addr) -> Option<String> {
        let i = self.nodes.iter().position(|a| a == addr)?;
        (0..4 * SLOTS).find_map(|n| {
            let name = format!("{base}:{n}");
            (self.owner_of_slot(key_slot(name.as_bytes())) == Some(i)).then_some(name)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `(input, CRC16)`: the XMODEM check value and what `CLUSTER KEYSLOT` answers.
    macro_rules! slot_vectors {
        ($($name:ident: $key:expr => $slot:expr,)*) => {$(
            #[test]
            fn $name() {
                assert_eq!(key_slot($key), $slot);
            }
        )*};
    }

    slot_vectors! {
        keyslot_foo: b"foo" => 12182,
        keyslot_empty: b"" => 0,
        keyslot_tag_foo: b"{foo}bar" => 12182,
        keyslot_empty_tag_hashes_everything: b"{}foo" => crc16(b"{}foo") % 16384,
        keyslot_unclosed_tag: b"{foo" => crc16(b"{foo") % 16384,
        keyslot_first_tag_only: b"x{foo}{bar}" => 12182,
        keyslot_tag_after_empty: b"{}{foo}" => crc16(b"{}{foo}") % 16384,
    }

    #[test]
    fn crc16_xmodem_check_value() {
        assert_eq!(crc16(b"123456789"), 0x31C3);
    }

    #[test]
    fn hash_tags_share_a_slot() {
        let a = key_slot(b"{user1000}.following");
        assert_eq!(a, key_slot(b"{user1000}.followers"));
        assert_eq!(a, key_slot(b"user1000"));
    }

    fn node(host: &str, port: i64) -> Value {
        Value::Array(vec![
            Value::BulkString(host.into()),
            Value::Int(port),
            Value::BulkString(b"id".to_vec()),
        ])
    }

    fn range(start: i64, end: i64, primary: Value) -> Value {
        Value::Array(vec![
            Value::Int(start),
            Value::Int(end),
            primary,
            node("r", 1),
        ])
    }

    /// Three primaries as `redis-cli --cluster create` splits the slots, listed out of order.
    fn three() -> SlotMap {
        let reply = Value::Array(vec![
            range(10923, 16383, node("127.0.0.1", 7003)),
            range(0, 5460, node("127.0.0.1", 7001)),
            range(5461, 10922, node("", 7002)),
        ]);
        SlotMap::from_cluster_slots(&reply, "127.0.0.1").unwrap()
    }

    #[test]
    fn a_map_from_cluster_slots() {
        let map = three();
        let addrs: Vec<_> = map
            .nodes()
            .iter()
            .map(|(h, p)| format!("{h}:{p}"))
            .collect();
        assert_eq!(
            addrs,
            ["127.0.0.1:7001", "127.0.0.1:7002", "127.0.0.1:7003"],
            "sorted; an unknown host is the seed's"
        );
        assert_eq!(map.owner_of_slot(0), Some(0));
        assert_eq!(map.owner_of_slot(5460), Some(0));
        assert_eq!(map.owner_of_slot(5461), Some(1));
        assert_eq!(map.owner_of_slot(16383), Some(2));
        assert_eq!(map.owner_of_slot(16384), None);
        assert_eq!(map.owner(b"foo"), Some(&("127.0.0.1".into(), 7003)));
        assert_eq!(map.owner(b"{foo}x"), map.owner(b"foo"));
    }

    #[test]
    fn unowned_slots_and_moved_ranges() {
        let reply = Value::Array(vec![
            range(0, 99, node("a", 1)),
            range(100, 100, node("b", 2)),
            range(200, 16383, node("a", 1)),
        ]);
        let map = SlotMap::from_cluster_slots(&reply, "s").unwrap();
        assert_eq!(
            map.nodes().len(),
            2,
            "a primary with two ranges is one shard"
        );
        assert_eq!(map.owner_of_slot(100), Some(1));
        assert_eq!(map.owner_of_slot(150), None, "a slot nobody serves");
        assert_eq!(map.owner_of_slot(99), Some(0));
        assert_eq!(map.owner_of_slot(200), Some(0));
    }

    #[test]
    fn refusals() {
        let bad = |v: Value| SlotMap::from_cluster_slots(&v, "h").unwrap_err();
        assert_eq!(bad(Value::Nil), MapError::Shape);
        assert_eq!(bad(Value::Array(vec![])), MapError::Empty);
        assert_eq!(bad(Value::Array(vec![Value::Int(1)])), MapError::Shape);
        let backwards = Value::Array(vec![range(5, 4, node("a", 1))]);
        assert_eq!(bad(backwards), MapError::Range);
        let past = Value::Array(vec![range(0, 16384, node("a", 1))]);
        assert_eq!(bad(past), MapError::Range);
        let port = Value::Array(vec![range(0, 1, node("a", 70000))]);
        assert_eq!(bad(port), MapError::Shape);
    }

    #[test]
    fn a_name_of_its_own_on_every_shard() {
        let map = three();
        for addr in map.nodes() {
            let name = map.name_on("fanout:@probe:a", addr).unwrap();
            assert!(name.starts_with("fanout:@probe:a:"));
            assert_eq!(map.owner(name.as_bytes()), Some(addr));
        }
        assert_eq!(map.name_on("x", &("nowhere".into(), 1)), None);
        // A hash tag pins every name to one slot: the other shards get none.
        let tagged: Vec<_> = (map.nodes().iter())
            .filter_map(|a| map.name_on("{foo}@probe", a))
            .collect();
        assert_eq!(tagged.len(), 1);
    }
}
