#!/usr/bin/env node
/**
 * Write a crawl output of about SIZE bytes as the official Trigger.dev
 * serializer stores it, so the benchmarks decode a real packet.
 *
 *   TSDK_DIR=<folder with @trigger.dev/sdk@4.8.3> node make_packet.mjs <out.body> [SIZE]
 *
 * The value has the shape of a site crawl: one object per page with a Date,
 * an undefined field, links, and a Map and a Set at the top. stringifyIO()
 * from @trigger.dev/core writes it as application/super+json. The body goes
 * to <out.body> and the data type to <out.body>.type.
 */
import { createRequire } from "node:module";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";

const [outFile, sizeArg] = process.argv.slice(2);
if (!outFile) {
  process.stderr.write("usage: node make_packet.mjs <out.body> [SIZE]\n");
  process.exit(2);
}
const targetSize = Number(sizeArg ?? 5 * 1024 * 1024);

const tsdkDir = process.env.TSDK_DIR || path.join(os.tmpdir(), "tsdk");
const requireFromSdk = createRequire(path.join(tsdkDir, "package.json"));
const corePackageFile = requireFromSdk.resolve("@trigger.dev/core/package.json");
const corePackage = JSON.parse(fs.readFileSync(corePackageFile, "utf8"));
const entry = corePackage.exports["./v3/utils/ioSerialization"].import.default;
const { stringifyIO } = await import(pathToFileURL(path.join(path.dirname(corePackageFile), entry)).href);

// A small linear congruential generator keeps the output the same on every run.
let seed = 12345;
function random() {
  seed = (seed * 1103515245 + 12345) % 2147483648;
  return seed / 2147483648;
}
const words = ["runs", "tasks", "queues", "schedules", "errors", "pricing", "setup", "python", "alpha", "gamma"];
function word() {
  return words[Math.floor(random() * words.length)];
}

function page(i) {
  const status = random() < 0.9 ? 200 : 404;
  const links = [];
  for (let j = 0; j < 4; j++) links.push(`https://docs.example.com/${word()}/${Math.floor(random() * 2000)}`);
  return {
    url: `https://docs.example.com/${word()}/${word()}-${i}`,
    title: `${word()} ${word()} - ${word()} ${i}`,
    status,
    links,
    fetchedAt: new Date(Date.UTC(2024, 4, 1, 12, 0, 0, i * 250)),
    error: status === 200 ? undefined : `HTTP ${status}`,
  };
}

async function build(pageCount) {
  const pages = [];
  for (let i = 0; i < pageCount; i++) pages.push(page(i));
  const statusCounts = new Map([[200, 0], [404, 0]]);
  for (const p of pages) statusCounts.set(p.status, statusCounts.get(p.status) + 1);
  const value = {
    site: "https://docs.example.com",
    startedAt: new Date(Date.UTC(2024, 4, 1, 12, 0, 0)),
    statusCounts,
    hosts: new Set(["docs.example.com", "cdn.example.com"]),
    pages,
  };
  return stringifyIO(value);
}

// Measure a small crawl, then scale the page count to reach the target size.
const probe = await build(1000);
const pageCount = Math.max(1, Math.round((1000 * targetSize) / Buffer.byteLength(probe.data)));
const packet = await build(pageCount);

fs.writeFileSync(outFile, packet.data);
fs.writeFileSync(`${outFile}.type`, packet.dataType);
process.stdout.write(`${Buffer.byteLength(packet.data)} bytes, ${pageCount} pages, ${packet.dataType}\n`);
