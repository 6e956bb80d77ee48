//! libgopher_kafka: gala-gopher's Kafka producer as a shared object.
//!
//! The agent loads this library with dlopen() only when a channel sends to
//! Kafka, so that an agent without Kafka maps neither librdkafka nor the
//! OpenSSL it links. The C ABI (a version function and a table of
//! functions) is in [`abi`]; this side wraps an rdkafka `BaseProducer` and
//! forwards its log lines, client errors and delivery reports to the
//! agent's callbacks. All the exporter's logic (keys, JSON, backlog,
//! window, counters) stays in the agent (gopher/src/export/kafka.rs).

pub mod abi;

use std::ffi::{c_int, c_void, CString};
use std::time::Duration;

use rdkafka::bindings as rdsys;
use rdkafka::bindings::rd_kafka_vtype_t::{
    RD_KAFKA_VTYPE_END, RD_KAFKA_VTYPE_KEY, RD_KAFKA_VTYPE_MSGFLAGS, RD_KAFKA_VTYPE_OPAQUE,
    RD_KAFKA_VTYPE_PARTITION, RD_KAFKA_VTYPE_TOPIC, RD_KAFKA_VTYPE_VALUE,
};
use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{
    BaseProducer, DeliveryResult, Producer as _, ProducerContext, PurgeConfig,
};
use rdkafka::types::RDKafkaRespErr;

use abi::{Api, Bytes, Callbacks, ErrBuf, ABI_VERSION, ERR_OTHER, OK};

/// The agent's callbacks; `ctx` points at the agent's state, which is
/// `Sync` and outlives the producer (the agent frees the producer first).
struct Ctx(Callbacks);

// SAFETY: the agent's callback state is shared between threads on its
// side (atomics and locks), and the function pointers are plain code.
unsafe impl Send for Ctx {}
// SAFETY: as above.
unsafe impl Sync for Ctx {}

fn code_of(e: &KafkaError) -> c_int {
    e.rdkafka_error_code().map_or(ERR_OTHER, |c| c as c_int)
}

impl ClientContext for Ctx {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, msg: &str) {
        // SAFETY: the callback contract of abi::Callbacks; the texts live
        // for the call.
        unsafe {
            (self.0.log)(
                self.0.ctx,
                level as c_int,
                Bytes::of(fac.as_bytes()),
                Bytes::of(msg.as_bytes()),
            );
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        let text = error.to_string();
        // SAFETY: as in `log`.
        unsafe {
            (self.0.error)(
                self.0.ctx,
                code_of(&error),
                Bytes::of(text.as_bytes()),
                Bytes::of(reason.as_bytes()),
            );
        }
    }
}

impl ProducerContext for Ctx {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, opaque: usize) {
        match result {
            // SAFETY: as in `log`.
            Ok(_) => unsafe { (self.0.delivery)(self.0.ctx, opaque, OK, Bytes::of(&[])) },
            Err((e, _)) => {
                let text = e.to_string();
                // SAFETY: as in `log`.
                unsafe {
                    (self.0.delivery)(self.0.ctx, opaque, code_of(e), Bytes::of(text.as_bytes()));
                }
            }
        }
    }
}

/// A producer and its topics as C strings (made once, not per message).
struct Producer {
    inner: BaseProducer<Ctx>,
    topics: Vec<Option<CString>>,
}

fn timeout(ms: c_int) -> Duration {
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

/// Text of a byte string given as a property key or value.
fn text(b: Bytes, what: &str) -> Result<String, String> {
    // SAFETY: the caller of `create` passes valid byte strings.
    let bytes = unsafe { b.get() };
    String::from_utf8(bytes.to_vec()).map_err(|_| format!("{what} is not UTF-8: {bytes:?}"))
}

unsafe extern "C" fn create(
    keys: *const Bytes,
    values: *const Bytes,
    n: usize,
    topics: *const Bytes,
    n_topics: usize,
    callbacks: *const Callbacks,
    err: ErrBuf,
) -> *mut c_void {
    let made = (|| -> Result<Producer, String> {
        if callbacks.is_null() || (n > 0 && (keys.is_null() || values.is_null())) {
            return Err("create: null argument".into());
        }
        let mut cc = ClientConfig::new();
        for i in 0..n {
            // SAFETY: `keys` and `values` hold `n` entries (the caller's
            // contract).
            let (k, v) = unsafe { (*keys.add(i), *values.add(i)) };
            cc.set(text(k, "a property name")?, text(v, "a property value")?);
        }
        let mut names = Vec::with_capacity(n_topics);
        for i in 0..n_topics {
            // SAFETY: `topics` holds `n_topics` entries.
            let t = text(unsafe { *topics.add(i) }, "a topic")?;
            names.push(if t.is_empty() {
                None
            } else {
                Some(CString::new(t).map_err(|e| format!("topic: {e}"))?)
            });
        }
        // SAFETY: checked non-null above; the agent's callbacks.
        let ctx = Ctx(unsafe { *callbacks });
        let inner: BaseProducer<Ctx> = cc.create_with_context(ctx).map_err(|e| e.to_string())?;
        Ok(Producer {
            inner,
            topics: names,
        })
    })();
    match made {
        Ok(p) => Box::into_raw(Box::new(p)).cast(),
        Err(e) => {
            // SAFETY: the caller's buffer.
            unsafe { abi::write_err(err, &e) };
            std::ptr::null_mut()
        }
    }
}

/// The producer behind `p`.
///
/// # Safety
/// `p` comes from `create` and is not freed.
unsafe fn producer<'a>(p: *mut c_void) -> &'a Producer {
    // SAFETY: the caller's contract.
    unsafe { &*p.cast::<Producer>() }
}

unsafe extern "C" fn send(
    p: *mut c_void,
    topic: usize,
    key: Bytes,
    payload: Bytes,
    opaque: usize,
    err: ErrBuf,
) -> c_int {
    // SAFETY: the ABI's contract.
    let p = unsafe { producer(p) };
    let Some(Some(topic)) = p.topics.get(topic) else {
        // SAFETY: the caller's buffer.
        unsafe { abi::write_err(err, &format!("no topic number {topic}")) };
        return ERR_OTHER;
    };
    // As rdkafka's BaseProducer::send, with the topic's C string made once.
    // SAFETY: a valid producer handle; librdkafka copies key and payload
    // (RD_KAFKA_MSG_F_COPY) before it returns.
    let e = unsafe {
        rdsys::rd_kafka_producev(
            p.inner.client().native_ptr(),
            RD_KAFKA_VTYPE_TOPIC,
            topic.as_ptr(),
            RD_KAFKA_VTYPE_PARTITION,
            -1i32,
            RD_KAFKA_VTYPE_MSGFLAGS,
            rdsys::RD_KAFKA_MSG_F_COPY,
            RD_KAFKA_VTYPE_VALUE,
            payload.ptr.cast_mut().cast::<c_void>(),
            payload.len,
            RD_KAFKA_VTYPE_KEY,
            key.ptr.cast_mut().cast::<c_void>(),
            key.len,
            RD_KAFKA_VTYPE_OPAQUE,
            opaque as *mut c_void,
            RD_KAFKA_VTYPE_END,
        )
    };
    if e == RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR {
        return OK;
    }
    let e = KafkaError::MessageProduction(RDKafkaErrorCode::from(e));
    // SAFETY: the caller's buffer.
    unsafe { abi::write_err(err, &e.to_string()) };
    code_of(&e)
}

unsafe extern "C" fn poll(p: *mut c_void, timeout_ms: c_int) {
    // SAFETY: the ABI's contract.
    unsafe { producer(p) }.inner.poll(timeout(timeout_ms));
}

unsafe extern "C" fn flush(p: *mut c_void, timeout_ms: c_int) -> c_int {
    // SAFETY: the ABI's contract.
    match unsafe { producer(p) }.inner.flush(timeout(timeout_ms)) {
        Ok(()) => OK,
        Err(e) => code_of(&e),
    }
}

unsafe extern "C" fn in_flight(p: *mut c_void) -> c_int {
    // SAFETY: the ABI's contract.
    unsafe { producer(p) }.inner.in_flight_count()
}

unsafe extern "C" fn purge(p: *mut c_void) {
    // SAFETY: the ABI's contract.
    unsafe { producer(p) }
        .inner
        .purge(PurgeConfig::default().queue().inflight());
}

unsafe extern "C" fn free(p: *mut c_void) {
    if !p.is_null() {
        // SAFETY: `p` came from Box::into_raw in `create`, freed once.
        drop(unsafe { Box::from_raw(p.cast::<Producer>()) });
    }
}

static API: Api = Api {
    abi_version: ABI_VERSION,
    create,
    send,
    poll,
    flush,
    in_flight,
    purge,
    free,
};

/// The ABI version of this library ([`abi::ABI_VERSION`]).
#[no_mangle]
pub extern "C" fn gopher_kafka_abi_version() -> u32 {
    ABI_VERSION
}

/// The library's function table.
#[no_mangle]
pub extern "C" fn gopher_kafka_api() -> *const Api {
    &API
}
