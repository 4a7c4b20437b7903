//! A long-lived libnftables session: the library `nft` itself is built on, loaded at run time
//! (`libnftables.so.1`, Debian's `libnftables1`, installed with `nftables`), with one context and
//! therefore one netlink socket kept open for the life of the firewall.
//!
//! Why not one `nft` process per apply: besides the process start (~4 ms), the kernel makes the
//! *closing* of an nftables netlink socket wait until every object a transaction deleted has been
//! freed, an RCU grace period (10–20 ms here), so a process that deletes one set element costs
//! ~16 ms where an add costs ~4 ms. A socket that stays open pays neither: a delete is a batch sent
//! and acknowledged, tens of microseconds (bench/firewall/deletes.sh measures both).
//!
//! The context is not thread-safe and its socket belongs to the network namespace it was opened
//! in, so it lives on a thread of its own that first enters the namespace (tests and benchmarks
//! point a firewall into `ip netns` namespaces) and then runs the commands sent to it, one at a
//! time. Dropping the last handle ends the thread and frees the context.

// The only module of the workspace that may use `unsafe` (calls into a C library).
#![allow(unsafe_code)]

use std::ffi::{c_char, c_int, c_uint, c_void, CStr, CString};
use std::sync::mpsc;
use std::sync::OnceLock;

use nix::libc;

/// The soname Debian ships (`libnftables1`); the unversioned name needs the -dev package.
const LIBRARY: &str = "libnftables.so.1";
/// `NFT_CTX_OUTPUT_JSON` (nftables.h): listings in JSON, and input parsed as JSON first.
const OUTPUT_JSON: c_uint = 1 << 4;
/// `NFT_CTX_DEFAULT`.
const CTX_DEFAULT: c_uint = 0;
/// `NETLINK_NETFILTER` (linux/netlink.h).
const NETLINK_NETFILTER: c_int = 12;

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("loading {LIBRARY}: {0}")]
    Load(String),
    #[error("entering network namespace {netns}: {message}")]
    Netns { netns: String, message: String },
    #[error("nft_ctx_new failed")]
    Context,
    #[error("no nftables netlink socket here: {0}")]
    Netlink(String),
    #[error("the libnftables session thread could not start: {0}")]
    Thread(String),
    #[error("the libnftables session thread is gone")]
    Gone,
}

type CtxNew = unsafe extern "C" fn(c_uint) -> *mut c_void;
type CtxFree = unsafe extern "C" fn(*mut c_void);
type CtxSetFlags = unsafe extern "C" fn(*mut c_void, c_uint);
type CtxBuffer = unsafe extern "C" fn(*mut c_void) -> c_int;
type CtxGetBuffer = unsafe extern "C" fn(*mut c_void) -> *const c_char;
type RunCmd = unsafe extern "C" fn(*mut c_void, *const c_char) -> c_int;

/// The library's entry points this module uses.
struct Library {
    ctx_new: CtxNew,
    ctx_free: CtxFree,
    output_set_flags: CtxSetFlags,
    buffer_output: CtxBuffer,
    buffer_error: CtxBuffer,
    get_output_buffer: CtxGetBuffer,
    get_error_buffer: CtxGetBuffer,
    run_cmd_from_buffer: RunCmd,
}

fn dl_error() -> String {
    // SAFETY: dlerror returns a thread-local message or null.
    let message = unsafe { libc::dlerror() };
    if message.is_null() {
        "unknown error".into()
    } else {
        // SAFETY: non-null dlerror messages are NUL-terminated strings.
        unsafe { CStr::from_ptr(message) }.to_string_lossy().into_owned()
    }
}

impl Library {
    /// The process-wide library, loaded on first use (never unloaded).
    fn get() -> Result<&'static Library, SessionError> {
        static LOADED: OnceLock<Result<Library, String>> = OnceLock::new();
        LOADED.get_or_init(Library::load).as_ref().map_err(|e| SessionError::Load(e.clone()))
    }

    fn load() -> Result<Library, String> {
        let name = CString::new(LIBRARY).map_err(|e| e.to_string())?;
        // SAFETY: a NUL-terminated name; the handle is kept for the life of the process.
        let handle = unsafe { libc::dlopen(name.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
        if handle.is_null() {
            return Err(dl_error());
        }
        let symbol = |name: &str| -> Result<*mut c_void, String> {
            let c = CString::new(name).map_err(|e| e.to_string())?;
            // SAFETY: a valid handle and a NUL-terminated symbol name.
            let found = unsafe { libc::dlsym(handle, c.as_ptr()) };
            if found.is_null() {
                Err(format!("{name}: {}", dl_error()))
            } else {
                Ok(found)
            }
        };
        // SAFETY: each symbol is the libnftables function of that name, whose C signature
        // (nftables/libnftables.h) is the function pointer type it is cast to.
        unsafe {
            Ok(Library {
                ctx_new: std::mem::transmute::<*mut c_void, CtxNew>(symbol("nft_ctx_new")?),
                ctx_free: std::mem::transmute::<*mut c_void, CtxFree>(symbol("nft_ctx_free")?),
                output_set_flags: std::mem::transmute::<*mut c_void, CtxSetFlags>(symbol("nft_ctx_output_set_flags")?),
                buffer_output: std::mem::transmute::<*mut c_void, CtxBuffer>(symbol("nft_ctx_buffer_output")?),
                buffer_error: std::mem::transmute::<*mut c_void, CtxBuffer>(symbol("nft_ctx_buffer_error")?),
                get_output_buffer: std::mem::transmute::<*mut c_void, CtxGetBuffer>(symbol(
                    "nft_ctx_get_output_buffer",
                )?),
                get_error_buffer: std::mem::transmute::<*mut c_void, CtxGetBuffer>(symbol("nft_ctx_get_error_buffer")?),
                run_cmd_from_buffer: std::mem::transmute::<*mut c_void, RunCmd>(symbol("nft_run_cmd_from_buffer")?),
            })
        }
    }
}

/// One context, owned by the session thread.
struct Context {
    library: &'static Library,
    ctx: *mut c_void,
}

impl Context {
    fn new(library: &'static Library) -> Result<Context, SessionError> {
        // libnftables calls exit() when it cannot open its netlink socket: find out first, so that
        // the caller falls back instead of the agent dying.
        socket2::Socket::new(
            socket2::Domain::from(libc::AF_NETLINK),
            socket2::Type::RAW,
            Some(socket2::Protocol::from(NETLINK_NETFILTER)),
        )
        .map_err(|e| SessionError::Netlink(e.to_string()))?;
        // nft_ctx_new's one-time global set-up is not thread-safe.
        static CREATING: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _one_at_a_time = CREATING.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        // SAFETY: plain constructor; null on failure.
        let ctx = unsafe { (library.ctx_new)(CTX_DEFAULT) };
        if ctx.is_null() {
            return Err(SessionError::Context);
        }
        // SAFETY: a live context from nft_ctx_new.
        unsafe {
            (library.output_set_flags)(ctx, OUTPUT_JSON);
            (library.buffer_output)(ctx);
            (library.buffer_error)(ctx);
        }
        Ok(Context { library, ctx })
    }

    /// Runs one command buffer (nft syntax or JSON): its output, or nft's error message.
    fn run(&mut self, command: &str) -> Result<String, String> {
        let command = CString::new(command).map_err(|_| "the command contains a NUL byte".to_string())?;
        // SAFETY: a live context and a NUL-terminated buffer; the returned buffers stay valid until
        // the next call on this context, and are copied before it.
        unsafe {
            let rc = (self.library.run_cmd_from_buffer)(self.ctx, command.as_ptr());
            let read = |buffer: *const c_char| {
                if buffer.is_null() {
                    String::new()
                } else {
                    CStr::from_ptr(buffer).to_string_lossy().into_owned()
                }
            };
            let output = read((self.library.get_output_buffer)(self.ctx));
            let error = read((self.library.get_error_buffer)(self.ctx));
            if rc == 0 {
                Ok(output)
            } else if error.trim().is_empty() {
                Err(format!("nft returned {rc}"))
            } else {
                Err(error.trim().to_string())
            }
        }
    }
}

impl Drop for Context {
    fn drop(&mut self) {
        // SAFETY: the context from nft_ctx_new, freed once.
        unsafe { (self.library.ctx_free)(self.ctx) }
    }
}

/// libnftables opens its netlink socket without close-on-exec, so every program the agent runs
/// (`ip`, `qemu-img`, ...) would inherit it. Marks every nftables netlink socket of the process
/// close-on-exec (the agent has no other; they are never meant to be inherited).
fn close_netfilter_sockets_on_exec() {
    let Ok(fds) = std::fs::read_dir("/proc/self/fd") else { return };
    for entry in fds.flatten() {
        let Some(fd) = entry.file_name().to_str().and_then(|n| n.parse::<c_int>().ok()) else { continue };
        let socket_option = |option: c_int| {
            let mut value: c_int = 0;
            let mut len = std::mem::size_of::<c_int>() as libc::socklen_t;
            // SAFETY: getsockopt into a c_int of the right size; fails harmlessly on non-sockets.
            let rc =
                unsafe { libc::getsockopt(fd, libc::SOL_SOCKET, option, (&mut value as *mut c_int).cast(), &mut len) };
            (rc == 0).then_some(value)
        };
        if socket_option(libc::SO_DOMAIN) == Some(libc::AF_NETLINK)
            && socket_option(libc::SO_PROTOCOL) == Some(NETLINK_NETFILTER)
        {
            // SAFETY: sets a descriptor flag on an open descriptor.
            unsafe {
                let flags = libc::fcntl(fd, libc::F_GETFD);
                if flags >= 0 {
                    libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC);
                }
            }
        }
    }
}

struct Request {
    command: String,
    reply: mpsc::SyncSender<Result<String, String>>,
}

/// A handle on the session thread; commands run one at a time, in the order sent.
pub struct NftSession {
    requests: mpsc::Sender<Request>,
    netns: Option<String>,
}

impl std::fmt::Debug for NftSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NftSession").field("netns", &self.netns).finish()
    }
}

fn enter_netns(netns: &str) -> Result<(), SessionError> {
    crate::netns::enter(&crate::netns::path_of(netns))
        .map_err(|e| SessionError::Netns { netns: netns.to_string(), message: e.to_string() })
}

impl NftSession {
    /// A session in this process's network namespace (`None`) or in `ip netns` namespace `netns`.
    pub fn open(netns: Option<&str>) -> Result<NftSession, SessionError> {
        let library = Library::get()?;
        let (requests, inbox) = mpsc::channel::<Request>();
        let (ready, started) = mpsc::sync_channel::<Result<(), SessionError>>(1);
        let target = netns.map(str::to_string);
        std::thread::Builder::new()
            .name("nft-session".into())
            .spawn(move || {
                let opened = target.as_deref().map_or(Ok(()), enter_netns).and_then(|()| Context::new(library));
                let mut context = match opened {
                    Ok(context) => context,
                    Err(e) => {
                        let _ = ready.send(Err(e));
                        return;
                    }
                };
                close_netfilter_sockets_on_exec();
                let _ = ready.send(Ok(()));
                for request in inbox {
                    let _ = request.reply.send(context.run(&request.command));
                }
            })
            .map_err(|e| SessionError::Thread(e.to_string()))?;
        started.recv().map_err(|_| SessionError::Gone)??;
        Ok(NftSession { requests, netns: netns.map(str::to_string) })
    }

    /// Runs `command` (nft syntax or a JSON batch): nft's output (JSON for listings), or its error.
    pub fn run(&self, command: String) -> Result<String, String> {
        let (reply, answer) = mpsc::sync_channel(1);
        self.requests.send(Request { command, reply }).map_err(|_| SessionError::Gone.to_string())?;
        answer.recv().map_err(|_| SessionError::Gone.to_string())?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_namespace_is_a_clear_error() {
        if Library::get().is_err() {
            return; // no libnftables on this machine: nothing to open
        }
        let err = NftSession::open(Some("hci-no-such-netns")).expect_err("no such namespace");
        assert!(err.to_string().contains("hci-no-such-netns"), "{err}");
    }
}
