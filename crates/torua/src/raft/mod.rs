//! Raft groups as this crate runs them, for nodes and coordinators alike:
//! hosting groups over a [`torua_store::ShardStore`] (`groups`), the RPCs
//! between replicas (`net` sends, `rpc` receives), and `docs`, the
//! coordinators' own group, which keeps their metadata.

pub(crate) mod docs;
pub(crate) mod groups;
mod net;
mod reads;
pub(crate) mod rpc;
mod writes;
