// Start runs through the extension's routes, poll them, and show the results.
"use strict";

const POLL_FIRST_DELAY_MS = 300;
const POLL_MAX_DELAY_MS = 2000;
// Polling stops after this long, so a run that never finishes does not poll forever.
const POLL_GIVE_UP_MS = 30 * 60 * 1000;

function formatBytes(bytes) {
  if (typeof bytes !== "number") return "unknown";
  if (bytes < 1024) return `${bytes} bytes`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KiB`;
  return `${(bytes / (1024 * 1024)).toFixed(2)} MiB`;
}

function describeStatus(body) {
  const metadata = body.metadata || {};
  const parts = [body.status || "UNKNOWN"];
  if (body.stage === "extraction" || body.stage === "analysis") parts.push(`${body.stage} run`);
  if (metadata.stage) parts.push(metadata.stage);
  if (typeof metadata.pagesCrawled === "number") parts.push(`${metadata.pagesCrawled} pages crawled`);
  return parts.join(", ");
}

function readOptions(form) {
  const payload = {};
  for (const input of form.querySelectorAll("input")) {
    const value = input.value.trim();
    if (!value) continue;
    payload[input.name] = input.type === "number" ? Number(value) : value;
  }
  return payload;
}

async function readJson(response) {
  try {
    return await response.json();
  } catch {
    return {};
  }
}

function requestError(response, body) {
  const message = body.message || `The server responded with ${response.status} ${response.statusText}.`;
  return new Error(message);
}

class TaskCard {
  constructor(section) {
    this.section = section;
    this.form = section.querySelector("form");
    this.startButton = section.querySelector("button.start");
    this.runBox = section.querySelector(".run");
    this.status = section.querySelector(".status");
    this.progress = section.querySelector("progress");
    this.errorBox = section.querySelector(".error");
    this.resultBox = section.querySelector(".result");
    this.downloadButton = section.querySelector("button.download");
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.start();
    });
    this.downloadButton.addEventListener("click", () => this.download());
    this.resultRunId = null;
  }

  reset() {
    this.errorBox.hidden = true;
    this.errorBox.textContent = "";
    this.resultBox.hidden = true;
    this.resultRunId = null;
    this.section.dataset.state = "starting";
  }

  setProgress(value) {
    if (typeof value === "number" && value >= 0 && value <= 1) {
      this.progress.value = value;
    } else {
      this.progress.removeAttribute("value");
    }
  }

  async start() {
    this.reset();
    this.startButton.disabled = true;
    this.runBox.hidden = false;
    this.status.textContent = "Starting the run...";
    this.setProgress(0);
    try {
      const response = await fetch(this.section.dataset.startUrl, {
        method: "POST",
        headers: { "Content-Type": "application/json", Accept: "application/json" },
        body: JSON.stringify(readOptions(this.form)),
      });
      const body = await readJson(response);
      if (!response.ok) throw requestError(response, body);
      const query = this.section.dataset.kind === "chain"
        ? { extractionRunId: body.extractionRunId }
        : { runId: body.runId };
      this.section.dataset.runId = body.runId || body.extractionRunId;
      await this.poll(query);
    } catch (error) {
      this.fail(error.message);
    } finally {
      this.startButton.disabled = false;
    }
  }

  async poll(query) {
    const started = Date.now();
    let delay = POLL_FIRST_DELAY_MS;
    for (;;) {
      if (Date.now() - started > POLL_GIVE_UP_MS) {
        throw new Error("Stopped polling: the run did not finish within 30 minutes.");
      }
      const url = `${this.section.dataset.pollUrl}?${new URLSearchParams(query)}`;
      const response = await fetch(url, { headers: { Accept: "application/json" } });
      const body = await readJson(response);
      if (!response.ok) throw requestError(response, body);
      if (body.analysisRunId) query.analysisRunId = body.analysisRunId;

      this.status.textContent = describeStatus(body);
      this.setProgress((body.metadata || {}).progress);

      if (body.isFinished && (this.section.dataset.kind !== "chain" || body.stage === "analysis" || !body.isSuccess)) {
        if (body.isSuccess) {
          let sizes = body;
          if (typeof body.outputSize !== "number") {
            // The status route reports no size; the task's own route does.
            const final = await fetch(`${this.section.dataset.finalUrl}?${new URLSearchParams(query)}`, {
              headers: { Accept: "application/json" },
            });
            sizes = await readJson(final);
            if (!final.ok) throw requestError(final, sizes);
          }
          await this.showResult(body.analysisRunId || body.runId || query.runId, sizes);
        } else {
          const error = body.error || {};
          const name = error.name ? `${error.name}: ` : "";
          this.fail(`The run ended with status ${body.status}. ${name}${error.message || "No error message."}`);
        }
        return;
      }
      await new Promise((resolve) => setTimeout(resolve, delay));
      delay = Math.min(POLL_MAX_DELAY_MS, Math.round(delay * 1.5));
    }
  }

  async showResult(runId, sizes) {
    this.status.textContent = "COMPLETED, loading the summary...";
    const response = await fetch(`${this.section.dataset.resultUrl}/${encodeURIComponent(runId)}/summary`, {
      headers: { Accept: "application/json" },
    });
    const body = await readJson(response);
    if (!response.ok) throw requestError(response, body);

    this.resultRunId = runId;
    this.setProgress(1);
    this.status.textContent = "COMPLETED";
    this.resultBox.querySelector(".headline").textContent = body.summary.headline;
    this.resultBox.querySelector(".output-size").textContent = formatBytes(sizes.outputSize);
    this.resultBox.querySelector(".output-offloaded").textContent = sizes.outputOffloaded
      ? "yes, read from a presigned URL"
      : "no, returned inline";

    const facts = this.resultBox.querySelector(".facts");
    for (const extra of facts.querySelectorAll(".fact")) extra.remove();
    for (const fact of body.summary.facts) {
      const term = document.createElement("dt");
      const value = document.createElement("dd");
      term.className = "fact";
      value.className = "fact";
      term.textContent = fact.label;
      value.textContent = fact.value === null || fact.value === undefined ? "-" : String(fact.value);
      facts.append(term, value);
    }

    const table = this.resultBox.querySelector(".findings");
    const rows = table.querySelector("tbody");
    rows.replaceChildren();
    for (const finding of body.summary.findings) {
      const row = rows.insertRow();
      row.dataset.kind = finding.kind;
      row.insertCell().textContent = finding.label;
      row.insertCell().textContent = String(finding.count);
    }
    table.hidden = body.summary.findings.length === 0;

    this.resultBox.hidden = false;
    this.section.dataset.state = "succeeded";
  }

  download() {
    if (!this.resultRunId) return;
    window.location.assign(
      `${this.section.dataset.resultUrl}/${encodeURIComponent(this.resultRunId)}/output.json`,
    );
  }

  fail(message) {
    this.errorBox.textContent = message;
    this.errorBox.hidden = false;
    this.status.textContent = "Failed.";
    this.setProgress(0);
    this.section.dataset.state = "failed";
  }
}

document.addEventListener("DOMContentLoaded", () => {
  for (const section of document.querySelectorAll("section.card")) new TaskCard(section);
});
