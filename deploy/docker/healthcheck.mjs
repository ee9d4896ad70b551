// Container health check: exit 0 when GET /health/ready on the local REST port answers 200, else 1.
// Port and scheme come from the variables the server reads (AKIDB_REST_PORT, else the port of
// AKIDB_BIND_ADDRESS, else 8080; HTTPS when AKIDB_TLS_CERT is set), so in a container set the REST
// port through the environment, not only in a config file.
import http from 'node:http';
import https from 'node:https';

const READY_PATH = '/health/ready';
const env = process.env;
const port = Number(env.AKIDB_REST_PORT || /:(\d+)$/.exec(env.AKIDB_BIND_ADDRESS ?? '')?.[1] || 8080);
const client = (env.AKIDB_TLS_CERT ?? '') !== '' ? https : http;

// The certificate names the service, not 127.0.0.1, and this asks about readiness, not identity.
const req = client.get({ host: '127.0.0.1', port, path: READY_PATH, timeout: 4000, rejectUnauthorized: false }, (res) => {
  res.resume();
  console.log(`${READY_PATH}: HTTP ${res.statusCode}`);
  process.exit(res.statusCode === 200 ? 0 : 1);
});
req.on('timeout', () => req.destroy(new Error('timed out after 4 s')));
req.on('error', (err) => {
  console.log(`${READY_PATH}: ${err.message}`);
  process.exit(1);
});
