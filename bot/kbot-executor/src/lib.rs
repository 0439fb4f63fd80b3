//! Executors of `kbot serve` besides its own child processes: an existing distributed engine
//! runs the work, kbot does not schedule it.
//!
//! - [`slurm`]: a Slurm cluster driven by its command line (`sbatch --parsable`, `squeue
//!   --json`, `scancel`; `slurmrestd` refuses root and its API changes per release), found
//!   the way Slurm's own commands find it (`SLURM_CONF`, else `/etc/slurm/slurm.conf`).
//!   Jobs are named after the kbot job, so a restarted service finds them before it submits.
//!   [`slurm::step`] is the pure decision for one arch's job.
//! - [`merge`]: the per-arch `kbot.result/v1` documents of one job as one (pure).
//! - [`testcluster`]: a real one-node Slurm cluster (munged, slurmctld, slurmd on 127.0.0.1,
//!   ports and files of its own under a temp dir, stopped by pid) for tests.

pub mod merge;
pub mod slurm;
pub mod testcluster;

pub use merge::merge;
