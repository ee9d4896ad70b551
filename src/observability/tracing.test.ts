import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../config/load-config.js';
import { useTempDirs } from '../test-support/temp-dirs.js';
import { tracingEnabled, tracingTarget, withSpan } from './tracing.js';

const tempDir = useTempDirs('akidb-tracing-');

describe('tracing configuration', () => {
  it("loads seed 004's [tracing] block word for word, off by default", () => {
    const cwd = tempDir();
    expect(loadConfig({ cwd, env: {} }).config.tracing).toEqual({ enabled: false, endpoint: 'http://localhost:4317', protocol: 'auto', service_name: 'akidb', sample_rate: 0.01 });
    fs.writeFileSync(path.join(cwd, 'config.toml'), '[tracing]\nenabled = true\nendpoint = "http://tempo:4317"\nsample_rate = 0.25\n');
    expect(loadConfig({ cwd, env: {} }).config.tracing).toMatchObject({ enabled: true, endpoint: 'http://tempo:4317', sample_rate: 0.25 });
  });

  it("takes seed 001's environment variables", () => {
    const env = { AKIDB_TELEMETRY_ENABLED: 'true', AKIDB_JAEGER_ENDPOINT: 'http://jaeger:4317', AKIDB_SERVICE_NAME: 'akidb-api', AKIDB_SAMPLING_RATIO: '1.0' };
    const { config } = loadConfig({ cwd: tempDir(), env });
    expect(config.tracing).toEqual({ enabled: true, endpoint: 'http://jaeger:4317', protocol: 'auto', service_name: 'akidb-api', sample_rate: 1 });
    expect(tracingTarget(config.tracing)).toEqual({ protocol: 'grpc', url: 'http://jaeger:4317' });
  });

  it('refuses an endpoint that is not an http(s) URL, a ratio outside 0..1 and an unknown protocol, naming the source', () => {
    const problems = (env: Record<string, string>): string => {
      try {
        loadConfig({ cwd: tempDir(), env });
      } catch (err) {
        if (err instanceof ConfigError) return err.problems.join('\n');
        throw err;
      }
      throw new Error('expected a ConfigError');
    };
    expect(problems({ AKIDB_JAEGER_ENDPOINT: 'jaeger:4317' })).toMatch(/tracing\.endpoint \(from AKIDB_JAEGER_ENDPOINT=jaeger:4317\): must be an http\(s\) URL/);
    const text = problems({ AKIDB_SAMPLING_RATIO: '2', AKIDB_TRACING_PROTOCOL: 'thrift' });
    expect(text).toMatch(/tracing\.sample_rate \(from AKIDB_SAMPLING_RATIO=2\): must be in 0\.\.1/);
    expect(text).toMatch(/tracing\.protocol \(from AKIDB_TRACING_PROTOCOL=thrift\): must be one of auto, grpc, http\/protobuf/);
  });

  it('picks OTLP/HTTP for an endpoint with a path or on port 4318, OTLP/gRPC otherwise, unless told', () => {
    expect(tracingTarget({ endpoint: 'http://localhost:4317', protocol: 'auto' })).toEqual({ protocol: 'grpc', url: 'http://localhost:4317' });
    expect(tracingTarget({ endpoint: 'https://otel.example.com', protocol: 'auto' })).toEqual({ protocol: 'grpc', url: 'https://otel.example.com' });
    expect(tracingTarget({ endpoint: 'http://collector:4318', protocol: 'auto' })).toEqual({ protocol: 'http/protobuf', url: 'http://collector:4318/v1/traces' });
    expect(tracingTarget({ endpoint: 'http://collector:9999/otlp/v1/traces', protocol: 'auto' })).toEqual({ protocol: 'http/protobuf', url: 'http://collector:9999/otlp/v1/traces' });
    expect(tracingTarget({ endpoint: 'http://collector:9999', protocol: 'http/protobuf' })).toEqual({ protocol: 'http/protobuf', url: 'http://collector:9999/v1/traces' });
    expect(tracingTarget({ endpoint: 'http://collector:4318/', protocol: 'grpc' })).toEqual({ protocol: 'grpc', url: 'http://collector:4318' });
  });
});

describe('withSpan while tracing is off', () => {
  it('runs the function at once with a non-recording span, passes its value and errors through, and never builds attributes', async () => {
    expect(tracingEnabled()).toBe(false);
    let built = 0;
    const attrs = (): Record<string, number> => {
      built += 1;
      return { n: 1 };
    };
    expect(withSpan('sync', attrs, (span) => (span.isRecording() ? 'recording' : 'quiet'))).toBe('quiet');
    await expect(withSpan('async', attrs, async () => 42)).resolves.toBe(42);
    expect(() => withSpan('throws', attrs, () => {
      throw new RangeError('boom');
    })).toThrow(RangeError);
    await expect(withSpan('rejects', attrs, () => Promise.reject(new Error('no')))).rejects.toThrow('no');
    expect(built).toBe(0);
  });
});
