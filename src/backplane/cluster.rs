//! Finding the shards: asks `--redis` (or, when it is gone, another known primary) for the
//! cluster's slot map. The routing itself is [`super::slots`].

use redis::{Client, Connection, ConnectionAddr, RedisResult, Value};
use tracing::debug;

use super::slots::{Addr, SlotMap};
use super::{CONNECT_TIMEOUT, IO_TIMEOUT, Settings};

/// What `--redis` turned out to be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Topology {
    /// A standalone server (or classic pub/sub, which any node of a cluster broadcasts): one
    /// connection to `--redis`.
    Single,
    /// A Redis Cluster: a connection per primary, each channel on the one owning its slot.
    Cluster(SlotMap),
}

impl Topology {
    /// The shards' addresses: `--redis` alone, or the cluster's primaries.
    pub(super) fn shards(&self, settings: &Settings) -> Vec<Addr> {
        match self {
            Topology::Single => vec![settings.seed()],
            Topology::Cluster(map) => map.nodes().to_vec(),
        }
    }

    /// The shard a Redis channel is served by, if any serves it now.
    pub(super) fn owner<'a>(&'a self, settings: &'a Settings, redis_channel: &str) -> Option<Addr> {
        match self {
            Topology::Single => Some(settings.seed()),
            Topology::Cluster(map) => map.owner(redis_channel.as_bytes()).cloned(),
        }
    }

    /// This node's probe channel on the shard at `addr` (see [`SlotMap::name_on`]).
    pub(super) fn probe_channel(&self, settings: &Settings, addr: &Addr) -> Option<String> {
        match self {
            Topology::Single => Some(settings.probe_channel()),
            Topology::Cluster(map) => map.name_on(&settings.probe_channel(), addr),
        }
    }
}

/// A connection to one shard (RESP3 for a subscriber): `--redis` itself as its URL says, any
/// other primary by its address with the URL's other settings (user, password, database).
pub(super) fn connect(settings: &Settings, addr: &Addr, resp3: bool) -> RedisResult<Connection> {
    let mut info = settings.connection(resp3);
    if *addr != settings.seed() {
        info = info.set_addr(ConnectionAddr::Tcp(addr.0.clone(), addr.1));
    }
    let con = Client::open(info)?.get_connection_with_timeout(CONNECT_TIMEOUT)?;
    con.set_write_timeout(Some(IO_TIMEOUT))?;
    con.set_read_timeout(Some(IO_TIMEOUT))?;
    Ok(con)
}

/// What `--redis` is: without `--redis-sharded`, [`Topology::Single`] without asking; else
/// `CLUSTER SLOTS` decides, asked of `--redis` and then of each of `known` until one answers.
pub(super) fn discover(settings: &Settings, known: &[Addr]) -> RedisResult<Topology> {
    if !settings.sharded {
        return Ok(Topology::Single);
    }
    let seed = settings.seed();
    let mut first_error = None;
    for addr in std::iter::once(&seed).chain(known.iter().filter(|a| **a != seed)) {
        match ask(settings, addr) {
            Ok(t) => return Ok(t),
            Err(e) => {
                debug!(host = %addr.0, port = addr.1, error = %e, "backplane: no slot map");
                first_error.get_or_insert(e);
            }
        }
    }
    Err(first_error.expect("the seed was asked"))
}

fn ask(settings: &Settings, addr: &Addr) -> RedisResult<Topology> {
    let mut con = connect(settings, addr, false)?;
    let reply: Value = match redis::cmd("CLUSTER").arg("SLOTS").query(&mut con) {
        Ok(v) => v,
        // "ERR This instance has cluster support disabled": a standalone server.
        Err(e) if e.to_string().contains("cluster support disabled") => {
            return Ok(Topology::Single);
        }
        Err(e) => return Err(e),
    };
    SlotMap::from_cluster_slots(&reply, &addr.0)
        .map(Topology::Cluster)
        .map_err(|e| {
            redis::RedisError::from((redis::ErrorKind::Parse, "CLUSTER SLOTS", format!("{e:?}")))
        })
}
