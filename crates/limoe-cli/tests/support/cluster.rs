//! A one-node Slurm cluster for tests, from Debian's `slurm-wlm` and `munge`: `munged` as
//! the munge user, `slurmctld` and `slurmd` as root, everything (key, socket, ports, state,
//! logs, `slurm.conf`) in a temporary directory, torn down on drop. Clients find it through
//! `SLURM_CONF` ([`Cluster::command`]).

use std::io::Read as _;
use std::net::TcpListener;
use std::os::unix::fs::{PermissionsExt, chown};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// One cluster at a time per test binary: each claims every core of this machine.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// How long the node may take to come up idle.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A running one-node cluster.
pub struct Cluster {
    dir: tempfile::TempDir,
    conf: PathBuf,
    /// munged, slurmctld, slurmd, in start order.
    daemons: Vec<Child>,
    _one_at_a_time: MutexGuard<'static, ()>,
}

impl Cluster {
    /// Starts a cluster; `None`, saying why on stderr, where this machine cannot run one (the
    /// packages are missing or this is not root). Panics, with the daemons' logs, when a
    /// daemon that is there fails to come up.
    pub fn start() -> Option<Cluster> {
        if let Err(why) = can_run() {
            eprintln!("skipped: no Slurm cluster can start here: {why}");
            return None;
        }
        let lock = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        let started = Instant::now();
        let dir = tempfile::tempdir().unwrap();
        // The munge user has to reach its directory inside this one.
        std::fs::set_permissions(dir.path(), PermissionsExt::from_mode(0o711)).unwrap();
        let mut cluster = Cluster {
            conf: dir.path().join("slurm.conf"),
            dir,
            daemons: Vec::new(),
            _one_at_a_time: lock,
        };
        cluster.start_munged();
        std::fs::write(&cluster.conf, cluster.config()).unwrap();
        for dir in ["state", "spool"] {
            std::fs::create_dir(cluster.path(dir)).unwrap();
        }
        for daemon in ["slurmctld", "slurmd"] {
            let log = std::fs::File::create(cluster.path(&format!("{daemon}.out"))).unwrap();
            let child = Command::new(sbin(daemon))
                .args(["-D", "-f"])
                .arg(&cluster.conf)
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap();
            cluster.daemons.push(child);
        }
        cluster.wait_until_idle();
        eprintln!(
            "slurm cluster idle {:.1}s after start",
            started.elapsed().as_secs_f64()
        );
        Some(cluster)
    }

    /// `program` with this cluster's `SLURM_CONF`.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new(program);
        command.env("SLURM_CONF", &self.conf);
        command
    }

    /// What `squeue` lists of every job, as `<job id>|<state>` lines (finished jobs too,
    /// for the `MinJobAge` they are kept).
    pub fn jobs(&self) -> String {
        let out = self
            .command("squeue")
            .args(["--noheader", "--array", "--states=all", "--format=%i|%T"])
            .output()
            .unwrap();
        assert!(out.status.success(), "squeue: {}", self.describe(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// [`Cluster::jobs`] once no job is queued, running or completing (a task's trial writes
    /// its record just before the task ends); panics when some still are after a minute.
    pub fn ended_jobs(&self) -> String {
        assert!(
            self.jobs_end_within(Duration::from_secs(60)),
            "jobs still queued or running:\n{}",
            self.jobs()
        );
        self.jobs()
    }

    /// The daemons' logs, for a failure message.
    pub fn logs(&self) -> String {
        [
            "munged.log",
            "slurmctld.log",
            "slurmd.log",
            "slurmctld.out",
            "slurmd.out",
        ]
        .iter()
        .map(|name| {
            let text = std::fs::read_to_string(self.path(name)).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = lines[lines.len().saturating_sub(15)..].join("\n");
            format!("--- {name}\n{tail}\n")
        })
        .collect()
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn describe(&self, out: &Output) -> String {
        format!(
            "{}{}{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.logs()
        )
    }

    /// munged in the foreground as the munge user, with a key of its own.
    fn start_munged(&mut self) {
        let (uid, gid) = munge_user().expect("checked by can_run");
        let munge = self.path("munge");
        std::fs::create_dir(&munge).unwrap();
        // munged insists on its directory being traversable by all, its key private.
        std::fs::set_permissions(&munge, PermissionsExt::from_mode(0o711)).unwrap();
        let mut key = vec![0u8; 1024];
        std::fs::File::open("/dev/urandom")
            .unwrap()
            .read_exact(&mut key)
            .unwrap();
        std::fs::write(munge.join("munge.key"), &key).unwrap();
        std::fs::set_permissions(munge.join("munge.key"), PermissionsExt::from_mode(0o400))
            .unwrap();
        chown(&munge, Some(uid), Some(gid)).unwrap();
        chown(munge.join("munge.key"), Some(uid), Some(gid)).unwrap();
        let child = Command::new(sbin("munged"))
            .arg("--foreground")
            .arg(format!("--socket={}", self.socket().display()))
            .arg(format!("--key-file={}", munge.join("munge.key").display()))
            .arg(format!("--pid-file={}", munge.join("munged.pid").display()))
            .arg(format!(
                "--seed-file={}",
                munge.join("munged.seed").display()
            ))
            .arg(format!("--log-file={}", self.path("munged.log").display()))
            .uid(uid)
            .gid(gid)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.path("munged.out")).unwrap())
            .spawn()
            .unwrap();
        self.daemons.push(child);
        let deadline = Instant::now() + START_TIMEOUT;
        while !self.socket().exists() {
            assert!(
                Instant::now() < deadline,
                "munged did not start:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn socket(&self) -> PathBuf {
        self.path("munge/munge.socket")
    }

    /// slurm.conf: this host as the one node, with what `slurmd -C` finds of it.
    fn config(&self) -> String {
        let out = Command::new(sbin("slurmd")).arg("-C").output().unwrap();
        let found = String::from_utf8_lossy(&out.stdout);
        let node = found
            .lines()
            .find(|l| l.starts_with("NodeName="))
            .unwrap_or_else(|| panic!("slurmd -C: {found}"));
        let dir = self.dir.path().display();
        format!(
            "ClusterName=limoetest\n\
             SlurmctldHost={host}(127.0.0.1)\n\
             SlurmctldPort={ctld_port}\n\
             SlurmdPort={slurmd_port}\n\
             SlurmUser=root\n\
             SlurmdUser=root\n\
             AuthType=auth/munge\n\
             CredType=cred/munge\n\
             AuthInfo=socket={socket}\n\
             StateSaveLocation={dir}/state\n\
             SlurmdSpoolDir={dir}/spool\n\
             SlurmctldPidFile={dir}/slurmctld.pid\n\
             SlurmdPidFile={dir}/slurmd.pid\n\
             SlurmctldLogFile={dir}/slurmctld.log\n\
             SlurmdLogFile={dir}/slurmd.log\n\
             ProctrackType=proctrack/linuxproc\n\
             TaskPlugin=task/none\n\
             SelectType=select/cons_tres\n\
             SelectTypeParameters=CR_Core\n\
             MpiDefault=none\n\
             ReturnToService=2\n\
             KillWait=10\n\
             JobAcctGatherType=jobacct_gather/none\n\
             AccountingStorageType=accounting_storage/none\n\
             JobCompType=jobcomp/none\n\
             {node} NodeAddr=127.0.0.1 State=UNKNOWN\n\
             PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP\n",
            host = node_name(node),
            ctld_port = free_port(),
            slurmd_port = free_port(),
            socket = self.socket().display(),
        )
    }

    /// Whether, within `limit`, no job is left queued, running or completing.
    fn jobs_end_within(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            let out = self
                .command("squeue")
                .args(["--noheader", "--states=PENDING,RUNNING,COMPLETING"])
                .output();
            if out.is_ok_and(|o| o.status.success() && o.stdout.is_empty()) {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn wait_until_idle(&self) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let out = self.command("sinfo").args(["-h", "-o", "%T"]).output();
            if out.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "idle") {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the node did not come up idle in {START_TIMEOUT:?}:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Cluster {
    /// Cancels what still runs (its processes outlive slurmd otherwise), then ends the
    /// daemons, last started first.
    fn drop(&mut self) {
        let _ = self.command("scancel").args(["--user=root"]).output();
        self.jobs_end_within(Duration::from_secs(20));
        for daemon in self.daemons.iter_mut().rev() {
            // SAFETY: signals a child of this process that has not been reaped.
            unsafe { libc::kill(daemon.id() as libc::pid_t, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(10);
            while daemon.try_wait().ok().flatten().is_none() {
                if Instant::now() > deadline {
                    let _ = daemon.kill();
                    let _ = daemon.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// Why no cluster can start here, if none can.
fn can_run() -> Result<(), String> {
    for daemon in ["munged", "slurmctld", "slurmd"] {
        if !sbin(daemon).is_file() {
            return Err(format!(
                "{daemon} is not installed (apt-get install slurm-wlm munge)"
            ));
        }
    }
    // SAFETY: getuid has no preconditions.
    if unsafe { libc::getuid() } != 0 {
        return Err("slurmd must run as root".into());
    }
    munge_user().map(|_| ())
}

fn sbin(daemon: &str) -> PathBuf {
    Path::new("/usr/sbin").join(daemon)
}

/// The munge user's uid and gid, from /etc/passwd.
fn munge_user() -> Result<(u32, u32), String> {
    let passwd = std::fs::read_to_string("/etc/passwd").map_err(|e| e.to_string())?;
    passwd
        .lines()
        .find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            (fields.len() > 3 && fields[0] == "munge")
                .then(|| Some((fields[2].parse().ok()?, fields[3].parse().ok()?)))
                .flatten()
        })
        .ok_or_else(|| "there is no munge user (apt-get install munge makes it)".into())
}

/// `vm` of `NodeName=vm CPUs=2 ...`.
fn node_name(node: &str) -> &str {
    node.split_whitespace()
        .next()
        .and_then(|n| n.strip_prefix("NodeName="))
        .unwrap_or_else(|| panic!("no NodeName in `{node}`"))
}

/// A TCP port nothing listens on now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
