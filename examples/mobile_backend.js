#!/usr/bin/env node
// The same backend in Node.js with its `net` module (docs/MAPS.md): the three command
// lines are pipelined (sent at once), and the replies come back one JSON line each, in
// order. Usage: mobile_backend.js [category lat lon [k]]; env as mobile_backend.py.
'use strict';
const net = require('net');
const readline = require('readline');

const conn = net.createConnection({ host: process.env.NEAREST_HOST || '127.0.0.1',
                                    port: Number(process.env.NEAREST_PORT || 7878) });
conn.on('error', (e) => { console.error(`nearestd: ${e.message}`); process.exit(2); });
const waiting = [];  // one resolver per command sent, in order
readline.createInterface({ input: conn }).on('line', (l) => waiting.shift()(JSON.parse(l)));
const ask = (line) => new Promise((resolve) => {
    waiting.push(resolve);
    conn.write(line + '\n');
});

const [category, lat, lon, k = '5'] = process.argv.length > 4 ? process.argv.slice(2)
    : ['meal_point', '36.16', '120.41'];
Promise.all([ask('FORMAT json'), ask(`CRS ${process.env.NEAREST_CRS || 'wgs84'}`),
             ask(`NEAREST ${category} ${lat} ${lon} K ${k}`)]).then(([, , reply]) => {
    conn.end();
    if (!reply.ok) {
        console.error(`nearestd: ${reply.error.code} ${reply.error.message}`);
        process.exitCode = 1;
        return;
    }
    for (const r of reply.results) {
        console.log(JSON.stringify({ id: r.id, name: r.name, lat: r.lat, lon: r.lon,
                                     distance_m: r.distance_m }));
    }
});
