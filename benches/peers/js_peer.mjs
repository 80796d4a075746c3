// Benchmark peers in Node.js: the official connector against the library
// through Node's FFI (koffi).
//
//   node peers/js_peer.mjs sdk|ffi cold WS_API CA_FILE API_KEY
//   node peers/js_peer.mjs sdk|ffi warm WS_API CA_FILE API_KEY N
//   node peers/js_peer.mjs sdk|ffi events WS_API STREAM CA_FILE API_KEY N WARMUP
//
// `sdk` is Binance's `@binance/derivatives-trading-usds-futures` WebSocket
// API client (pointed at the local exchange with `wsURL`; it trusts the
// exchange's CA through NODE_EXTRA_CA_CERTS, which the caller sets). `ffi`
// calls libbinance_uds.so (BINANCE_UDS_LIBRARY) with koffi, synchronously,
// as a Node program would wrap a blocking C API. Both: a listenKey from
// userDataStream.start, then userDataStream.ping calls, each answer's key
// read back. Packages are found through NODE_PATH (scripts/bench.sh
// installs them). Prints one line `RESULT {json}`, times in µs: `cold.us`
// from the first line of this script to the first key; `warm.samples`
// each keepalive after 300 unmeasured ones; `events.samples` the latency of
// each of N user-stream events after WARMUP unmeasured: the wall clock as
// the event is in the program's hands (performance.timeOrigin +
// performance.now(), corrected to CLOCK_REALTIME at start) minus the
// exchange's send time, which the benchmark's events carry as their client
// order id `o.c`. The program prints `READY` once its stream is open; the
// benchmark then emits. `sdk` subscribes as the connector's README shows (websocketStreams.connect,
// userData(listenKey), on('message')); `ffi` opens a stream with
// binance_user_stream_open and reads it with binance_user_stream_next,
// synchronously, each event's JSON copied into a JS string and parsed.

import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';

const T0 = performance.now();
const require = createRequire(import.meta.url);
const WARMUP = 300;
const WAIT_MS = 60000;
const [impl, mode] = process.argv.slice(2, 4);
const events = mode === 'events';
const [wsApi, stream, caFile, apiKey, nArg, warmArg] = events
    ? process.argv.slice(4)
    : [process.argv[4], undefined, ...process.argv.slice(5)];
const n = Number(nArg ?? 0);
const warmup = Number(warmArg ?? 0);

// performance.timeOrigin + performance.now() is off CLOCK_REALTIME (which
// the exchange stamps) by some µs, differently in each process: measured
// once against clock_gettime (libc through koffi, off the timed path) and
// corrected, on both sides alike.
function realtimeOffsetUs() {
    const koffi = require('koffi');
    const timespec = koffi.struct('timespec', { tv_sec: 'int64_t', tv_nsec: 'int64_t' });
    const clockGettime = koffi.load('libc.so.6').func('int clock_gettime(int clk, _Out_ timespec *ts)');
    let best = { span: Infinity, offset: 0 };
    for (let i = 0; i < 50; i++) {
        const ts = {};
        const a = (performance.timeOrigin + performance.now()) * 1e3;
        clockGettime(0, ts); // CLOCK_REALTIME
        const b = (performance.timeOrigin + performance.now()) * 1e3;
        const real = Number(ts.tv_sec) * 1e6 + Number(ts.tv_nsec) / 1e3;
        if (b - a < best.span) best = { span: b - a, offset: real - (a + b) / 2 };
    }
    return best.offset;
}
const OFFSET_US = events ? realtimeOffsetUs() : 0;

// The wall clock in µs, and an event's latency from its send time in `o.c` (ns).
const nowUs = () => (performance.timeOrigin + performance.now()) * 1e3 + OFFSET_US;
const latencyUs = (now, event) => now - Number(BigInt(event.o.c) / 1000n);
const ready = () => console.log('READY');

async function sdkEvents() {
    const { DerivativesTradingUsdsFutures } = require('@binance/derivatives-trading-usds-futures');
    const client = new DerivativesTradingUsdsFutures({
        configurationWebsocketAPI: { apiKey, apiSecret: 'unused', wsURL: wsApi },
        // The connector's streams base: it adds /private/stream (and /market, /public).
        configurationWebsocketStreams: { wsURL: stream.slice(0, stream.lastIndexOf('/private')) },
    });
    const api = await client.websocketAPI.connect();
    const listenKey = (await api.startUserDataStream()).data.listenKey;
    const streams = await client.websocketStreams.connect();
    const lat = [];
    const done = new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`${lat.length} events in ${WAIT_MS} ms`)), WAIT_MS);
        streams.userData(listenKey).on('message', (event) => {
            lat.push(latencyUs(nowUs(), event));
            if (lat.length === n + warmup) {
                clearTimeout(timer);
                resolve();
            }
        });
    });
    ready();
    await done;
    return { samples: lat.slice(warmup) };
}

async function sdk() {
    const { DerivativesTradingUsdsFutures } = require('@binance/derivatives-trading-usds-futures');
    const client = new DerivativesTradingUsdsFutures({
        configurationWebsocketAPI: { apiKey, apiSecret: 'unused', wsURL: wsApi },
    });
    const conn = await client.websocketAPI.connect();
    const key = async (call) => {
        const answer = await call();
        return answer.data.listenKey ?? answer.data.result?.listenKey;
    };
    const first = await key(() => conn.startUserDataStream());
    if (mode === 'cold') return { us: (performance.now() - T0) * 1e3, key_len: first.length };
    for (let i = 0; i < WARMUP; i++) await key(() => conn.keepaliveUserDataStream());
    const samples = [];
    for (let i = 0; i < n; i++) {
        const t = performance.now();
        const k = await key(() => conn.keepaliveUserDataStream());
        samples.push((performance.now() - t) * 1e3);
        if (k.length !== 64) throw new Error(`bad key ${k}`);
    }
    return { samples };
}

// The library through koffi: its functions and a client for the exchange.
function ffiClient() {
    const koffi = require('koffi');
    const lib = koffi.load(process.env.BINANCE_UDS_LIBRARY);
    const f = (sig) => lib.func(sig);
    const configNew = f('void *binance_config_new(void)');
    const setKey = f('int32_t binance_config_set_api_key(void *cfg, const char *v, _Out_ void **err)');
    const setEndpoint = f('int32_t binance_config_set_endpoint(void *cfg, const char *v, _Out_ void **err)');
    const addRoot = f('int32_t binance_config_add_root_certificate_pem(void *cfg, const char *v, _Out_ void **err)');
    const configFree = f('void binance_config_free(void *cfg)');
    const clientNew = f('int32_t binance_client_new(void *cfg, _Out_ void **client, _Out_ void **err)');
    const clientFree = f('void binance_client_free(void *client)');
    const start = f('int32_t binance_listen_key_start(void *client, _Out_ void **key, _Out_ void **err)');
    const keepalive = f('int32_t binance_listen_key_keepalive(void *client, _Out_ void **key, _Out_ void **err)');
    const stringFree = f('void binance_string_free(void *s)');
    const errorMessage = f('const char *binance_error_message(void *err)');
    const errorFree = f('void binance_error_free(void *err)');
    const setStream = f('int32_t binance_config_set_stream_endpoint(void *cfg, const char *v, _Out_ void **err)');
    const check = (status, err, what) => {
        if (status === 0) return;
        const msg = err[0] ? errorMessage(err[0]) : '(no error detail)';
        if (err[0]) errorFree(err[0]);
        throw new Error(`${what}: status ${status}: ${msg}`);
    };
    const err = [null];
    const cfg = configNew();
    check(setKey(cfg, apiKey, err), err, 'api key');
    check(setEndpoint(cfg, wsApi, err), err, 'endpoint');
    check(addRoot(cfg, readFileSync(caFile, 'utf8'), err), err, 'CA');
    if (stream) check(setStream(cfg, stream, err), err, 'stream endpoint');
    const out = [null];
    check(clientNew(cfg, out, err), err, 'client');
    const client = out[0];
    configFree(cfg);
    return { koffi, f, check, client, clientFree, start, keepalive, stringFree };
}

function ffiEvents() {
    const { f, check, client, clientFree } = ffiClient();
    const open = f('int32_t binance_user_stream_open(void *client, _Out_ void **stream, _Out_ void **err)');
    const next = f('int32_t binance_user_stream_next(void *stream, uint32_t timeout_ms, _Out_ void **ev, _Out_ void **err)');
    const isLibrary = f('int32_t binance_event_is_library(void *ev)');
    const eventJson = f('const char *binance_event_json(void *ev)');
    const eventFree = f('void binance_event_free(void *ev)');
    const close = f('void binance_user_stream_close(void *stream)');
    const err = [null];
    const out = [null];
    check(open(client, out, err), err, 'stream open');
    const st = out[0];
    ready();
    const lat = [];
    while (lat.length < n + warmup) {
        check(next(st, WAIT_MS, out, err), err, `next (after ${lat.length} events)`);
        const now = nowUs();
        const ev = out[0];
        if (!isLibrary(ev)) lat.push(latencyUs(now, JSON.parse(eventJson(ev))));
        eventFree(ev);
    }
    close(st);
    clientFree(client);
    return { samples: lat.slice(warmup) };
}

function ffi() {
    const { koffi, check, client, clientFree, start, keepalive, stringFree } = ffiClient();
    const err = [null];
    // The key is copied into a JS string, then freed, as a wrapper would.
    const call = (fn, what) => {
        const key = [null];
        check(fn(client, key, err), err, what);
        const s = koffi.decode(key[0], 'char', -1);
        stringFree(key[0]);
        return s;
    };
    const first = call(start, 'start');
    if (mode === 'cold') return { us: (performance.now() - T0) * 1e3, key_len: first.length };
    for (let i = 0; i < WARMUP; i++) call(keepalive, 'keepalive');
    const samples = [];
    for (let i = 0; i < n; i++) {
        const t = performance.now();
        const k = call(keepalive, 'keepalive');
        samples.push((performance.now() - t) * 1e3);
        if (k.length !== 64) throw new Error(`bad key ${k}`);
    }
    clientFree(client);
    return { samples };
}

const result = events ? (impl === 'sdk' ? await sdkEvents() : ffiEvents()) : impl === 'sdk' ? await sdk() : ffi();
console.log('RESULT ' + JSON.stringify(result));
// The SDK keeps timers and sockets open; do not wait for them.
process.exit(0);
