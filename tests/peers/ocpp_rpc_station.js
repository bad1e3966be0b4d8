// A station built with the npm package ocpp-rpc in strict mode (code we did not write): every
// answer of ours is validated against its own copy of the 1.6 schemas. Usage:
//   node ocpp_rpc_station.js ws://HOST:PORT/ IDENTITY PASSWORD
// Prints one JSON line with what the central system answered.
const { RPCClient, createRPCError } = require('ocpp-rpc');

async function main() {
    const [endpoint, identity, password] = process.argv.slice(2);
    const station = new RPCClient({ endpoint, identity, password, protocols: ['ocpp1.6'], strictMode: true,
                                    reconnect: false });
    station.handle(({ method }) => { throw createRPCError('NotImplemented', `${method} not in this test station`); });
    await station.connect();
    const now = () => new Date().toISOString();
    const out = {};
    out.boot = await station.call('BootNotification', { chargePointVendor: 'npm', chargePointModel: 'ocpp-rpc' });
    out.heartbeat = await station.call('Heartbeat', {});
    out.start = await station.call('StartTransaction', { connectorId: 1, idTag: 'NPM', meterStart: 100, timestamp: now() });
    // a day of 15-minute samples with signed values: about 130 KB
    const data = [...Array(96).keys()].map(i => ({
        timestamp: new Date(Date.now() - (96 - i) * 900000).toISOString(),
        sampledValue: [{ value: String(100 + i) }, { value: 'A'.repeat(1200), format: 'SignedData' }],
    }));
    out.stop = await station.call('StopTransaction', { transactionId: out.start.transactionId, meterStop: 5000,
                                                       timestamp: now(), idTag: 'NPM', transactionData: data });
    out.accepted = await station.call('DataTransfer', { vendorId: 'GiroE', messageId: 'Receipt', data: '12,34 EUR' });
    out.unknown = await station.call('DataTransfer', { vendorId: 'Nobody' });
    await station.close({ code: 1000 });
    console.log(JSON.stringify(out));
}

main().catch(e => { console.error(String(e && e.stack || e)); process.exit(1); });
