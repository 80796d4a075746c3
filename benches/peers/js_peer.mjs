// Benchmark peers in Node.js: the official connector against the library
// through Node's FFI (koffi).
//
//   node peers/js_peer.mjs sdk|ffi cold WS_API CA_FILE API_KEY
//   node peers/js_peer.mjs sdk|ffi warm WS_API CA_FILE API_KEY N
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
// each keepalive after 300 unmeasured ones.

import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';

const T0 = performance.now();
const require = createRequire(import.meta.url);
const WARMUP = 300;
const [impl, mode, wsApi, caFile, apiKey, nArg] = process.argv.slice(2);
const n = Number(nArg ?? 0);

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

function ffi() {
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
    const check = (status, err, what) => {
        if (status === 0) return;
        const msg = errorMessage(err[0]);
        errorFree(err[0]);
        throw new Error(`${what}: status ${status}: ${msg}`);
    };
    const err = [null];
    const cfg = configNew();
    check(setKey(cfg, apiKey, err), err, 'api key');
    check(setEndpoint(cfg, wsApi, err), err, 'endpoint');
    check(addRoot(cfg, readFileSync(caFile, 'utf8'), err), err, 'CA');
    const out = [null];
    check(clientNew(cfg, out, err), err, 'client');
    const client = out[0];
    configFree(cfg);
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

const result = impl === 'sdk' ? await sdk() : ffi();
console.log('RESULT ' + JSON.stringify(result));
// The SDK keeps timers and sockets open; do not wait for them.
process.exit(0);
