// The official Binance JS connector against the local exchange (issues 9
// and 11):
// its WebSocket API client obtains a listenKey (userDataStream.start), its
// streams client opens the /market, /public and /private pool and subscribes
// the key (userData), the control port emits an ORDER_TRADE_UPDATE, and the
// connector's callback must receive it intact. Then its REST client, with an
// HMAC key and with an Ed25519 key, must get the account's state from the
// signed endpoints, and a wrong signature must be refused (-1022). Run by
// scripts/test.sh with
// @binance/derivatives-trading-usds-futures (pinned there) on NODE_PATH. It
// starts the exchange itself (target/debug/local-exchange, or
// $BINANCE_UDS_EXCHANGE) and trusts its CA through the connector's `agent`
// option (an https.Agent with the CA; NODE_EXTRA_CA_CERTS would work too,
// but node reads it at start, before this script has minted the CA).
'use strict';

const { spawn } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const https = require('node:https');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const readline = require('node:readline');
const assert = require('node:assert/strict');
const { DerivativesTradingUsdsFutures } = require('@binance/derivatives-trading-usds-futures');

const ROOT = path.resolve(__dirname, '..', '..');
const API_KEY = 'JsSdkKey0123456789';
const HMAC_KEY = 'JsRestHmacKey01';
const HMAC_SECRET = 'jsS3cretForTheLocalExchange0123456789abcdef';
const ED_KEY = 'JsRestEd25519Key01';
const WAIT_MS = 15000;

function startExchange(caFile, caKey, extra) {
    const exe = process.env.BINANCE_UDS_EXCHANGE || path.join(ROOT, 'target', 'debug', 'local-exchange');
    const child = spawn(exe, ['--die-with-stdin', '--stream-string-ids', '--ca-out', caFile, '--ca-key', caKey, ...extra], {
        stdio: ['pipe', 'pipe', 'inherit'],
    });
    return new Promise((resolve, reject) => {
        const ready = {};
        const lines = readline.createInterface({ input: child.stdout });
        lines.on('line', (line) => {
            const i = line.indexOf('=');
            ready[line.slice(0, i)] = line.slice(i + 1); // unknown lines are kept
            if (['ws_api', 'stream', 'control', 'ca_file', 'rest'].every((k) => k in ready)) resolve({ child, ready });
        });
        child.on('exit', (code) => reject(new Error(`local-exchange (${exe}) exited ${code} before it was ready`)));
        child.on('error', reject);
    });
}

function control(ready, cmd) {
    const [host, port] = [ready.control.slice(0, ready.control.lastIndexOf(':')), ready.control.slice(ready.control.lastIndexOf(':') + 1)];
    return new Promise((resolve, reject) => {
        const s = net.createConnection({ host, port: Number(port) }, () => s.write(JSON.stringify(cmd) + '\n'));
        let buf = '';
        s.on('data', (d) => {
            buf += d;
            const nl = buf.indexOf('\n');
            if (nl < 0) return;
            s.end();
            const answer = JSON.parse(buf.slice(0, nl));
            if (answer.ok) resolve(answer);
            else reject(new Error(`control ${JSON.stringify(cmd)} failed: ${JSON.stringify(answer)}`));
        });
        s.on('error', reject);
    });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function main() {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'js-sdk-exchange-'));
    const ed = crypto.generateKeyPairSync('ed25519');
    const pub = path.join(dir, 'ed25519.pub.pem');
    fs.writeFileSync(pub, ed.publicKey.export({ type: 'spki', format: 'pem' }));
    const accounts = ['--account', `${HMAC_KEY}:${HMAC_SECRET}`, '--account-ed25519', `${ED_KEY}:${pub}`];
    const { child, ready } = await startExchange(path.join(dir, 'ca.pem'), path.join(dir, 'ca.key'), accounts);
    try {
        const agent = new https.Agent({ ca: fs.readFileSync(ready.ca_file) });
        const base = ready.stream.slice(0, ready.stream.lastIndexOf('/private'));
        const client = new DerivativesTradingUsdsFutures({
            configurationWebsocketAPI: { apiKey: API_KEY, wsURL: ready.ws_api, agent },
            configurationWebsocketStreams: { wsURL: base, agent },
        });
        const api = await client.websocketAPI.connect();
        const started = await api.startUserDataStream();
        const listenKey = started.data.listenKey;
        const keys = (await control(ready, { cmd: 'keys' })).keys;
        assert.deepEqual(keys.map((k) => k.listen_key), [listenKey]);
        console.log(`js SDK: userDataStream.start gave ${listenKey.slice(0, 8)}…`);

        const streams = await client.websocketStreams.connect();
        const received = [];
        const handle = streams.userData(listenKey);
        handle.on('message', (m) => received.push(m));
        const next = async () => {
            for (let waited = 0; received.length === 0; waited += 20) {
                if (waited > WAIT_MS) throw new Error('no event in time');
                await sleep(20);
            }
            return received.shift();
        };

        let conns = [];
        for (let i = 0; i < 100; i++) {
            conns = (await control(ready, { cmd: 'stream_connections' })).connections;
            if (conns.some((c) => c.keys.includes(listenKey))) break;
            await sleep(50);
        }
        assert.deepEqual(conns.map((c) => c.path).sort(), ['/market/stream', '/private/stream', '/public/stream']);
        const priv = conns.find((c) => c.path === '/private/stream');
        assert.equal(priv.form, 'subscribe');
        assert.deepEqual(priv.keys, [listenKey]);

        const event = {
            e: 'ORDER_TRADE_UPDATE', E: 0, T: 1568879465650,
            o: {
                s: 'BTCUSDT', c: 'js-check', S: 'SELL', o: 'LIMIT', f: 'GTC', q: '0.003', p: '65000.5',
                ap: '0', sp: '0', x: 'NEW', X: 'NEW', i: 4343, l: '0', z: '0', L: '0', N: 'USDT', n: '0',
                T: 1568879465650, t: 0, b: '0', a: '195.0015', m: false, R: false, wt: 'CONTRACT_PRICE',
                ot: 'LIMIT', ps: 'BOTH', cp: false, rp: '0', pP: false, si: 0, ss: 0, V: 'EXPIRE_MAKER',
                pm: 'NONE', gtd: 0, er: '0',
            },
        };
        const raw = JSON.stringify(event).replace('"E":0', '"E":{E}');
        const emitted = await control(ready, { cmd: 'emit', api_key: API_KEY, raw });
        assert.equal(emitted.delivered, 1);
        event.E = emitted.first_E;

        assert.deepEqual(await next(), event);
        console.log('js SDK: the callback received the ORDER_TRADE_UPDATE intact');

        // serverShutdown: this connector (38.1.1) handles it on WebSocket API
        // connections only (WebsocketAPIBase.onMessage), renewing the
        // connection before the old one closes; a request then still works.
        const before = await control(ready, { cmd: 'stats' });
        assert.equal((await control(ready, { cmd: 'server_shutdown', target: 'api', close_after_ms: 15000 })).connections, 1);
        let stats = before;
        for (let i = 0; i < 300; i++) {
            stats = await control(ready, { cmd: 'stats' });
            if (stats.api_connections_total === before.api_connections_total + 1 && stats.api_connections_open === 1) break;
            await sleep(50);
        }
        assert.equal(stats.api_connections_total, before.api_connections_total + 1, JSON.stringify(stats));
        assert.equal(stats.api_connections_open, 1, JSON.stringify(stats));
        const pinged = await api.keepaliveUserDataStream();
        assert.equal(pinged.data.listenKey, listenKey);
        console.log('js SDK: after serverShutdown its WebSocket API connection was renewed, requests still answered');

        await streams.disconnect();
        await api.disconnect();

        // REST: signed requests, HMAC and Ed25519, answered with the account's state.
        const rest = (cred) => new DerivativesTradingUsdsFutures({
            configurationRestAPI: { basePath: ready.rest, httpsAgent: agent, ...cred },
        }).restAPI;
        const ed25519Pem = ed.privateKey.export({ type: 'pkcs8', format: 'pem' });
        for (const [key, cred] of [[HMAC_KEY, { apiSecret: HMAC_SECRET }], [ED_KEY, { privateKey: ed25519Pem }]]) {
            await control(ready, { cmd: 'deposit', api_key: key, amount: '2500' });
            const o = await control(ready, { cmd: 'order_place', api_key: key, side: 'SELL', quantity: '1.5', price: '2999.9', symbol: 'ETHUSDT' });
            await control(ready, { cmd: 'order_fill', api_key: key, order_id: o.order_id, quantity: '0.5' });
            await control(ready, { cmd: 'algo_place', api_key: key, side: 'BUY', quantity: '0.5', trigger_price: '3100' });
            const client = rest({ apiKey: key, ...cred });
            const snap = await control(ready, { cmd: 'snapshot', api_key: key });
            assert.deepEqual(await (await client.currentAllOpenOrders()).data(), snap.open_orders);
            assert.deepEqual(await (await client.currentAllAlgoOpenOrders()).data(), snap.open_algo_orders);
            assert.deepEqual(await (await client.accountInformationV3()).data(), snap.account);
            assert.deepEqual(await (await client.positionInformationV3()).data(), snap.positions);
            assert.deepEqual(await (await client.futuresAccountBalanceV3()).data(), snap.balance);
        }
        console.log('js SDK REST: HMAC- and Ed25519-signed requests answered with the account\'s state');
        const wrong = rest({ apiKey: HMAC_KEY, apiSecret: `${HMAC_SECRET}x`, retries: 0 });
        await assert.rejects(() => wrong.currentAllOpenOrders(), (e) => e.name === 'BadRequestError' && e.code === -1022);
        console.log('js SDK REST: a wrong signature is refused (-1022)');
    } finally {
        child.stdin.end();
        child.kill();
        fs.rmSync(dir, { recursive: true, force: true });
    }
}

main().then(() => process.exit(0), (e) => {
    console.error(`js SDK test failed: ${e.stack || e}`);
    process.exit(1);
});
