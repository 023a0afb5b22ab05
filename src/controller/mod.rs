//! The OAuthClient controller. The path of one object: its watches and
//! kube-runtime's `Controller` in [`run`] (with the re-list adapter in
//! [`relist`]), pure decisions in [`decide`], effects in [`reconcile`], the
//! Secret's shape in [`secret`], conditions in [`status`] and their words in
//! [`reasons`]. A Collibra instance, its shared list and what was learned
//! about it are in [`collibra_instance`], [`client_list`] and
//! [`capability`]; what every reconcile shares in [`context`]; what is kept
//! per object in [`object_state`] and [`backoff`]; the operator's own
//! Secret writes in [`own_writes`], the Secrets' metadata in
//! [`secret_cache`], rival claims on a clientName in [`names`]. The design
//! these follow is docs/design.md.

pub mod backoff;
pub mod capability;
pub mod client_list;
pub mod collibra_instance;
pub mod context;
pub mod decide;
pub mod names;
pub mod object_state;
pub mod own_writes;
pub mod reasons;
pub mod reconcile;
pub mod relist;
pub mod run;
pub mod secret;
pub mod secret_cache;
pub mod status;
