// Browser-side steps of the automated tests. Loaded only with ?autotest=1.
// Each step waits for a condition with a deadline and reports to the test
// server over HTTP (POST /test/checkpoint and /test/results), which takes
// screenshots and checks the server side at the named checkpoints.

const results = { ok: false, steps: [], error: null, measurements: {} };

async function post(path, body) {
  const response = await fetch(path, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  return response.ok ? await response.json() : { error: response.status };
}

export async function checkpoint(name, extra = {}) {
  results.steps.push(name);
  return await post("/test/checkpoint", { name, ...extra });
}

export async function waitFor(predicate, timeoutMs, what) {
  const deadline = performance.now() + timeoutMs;
  while (performance.now() < deadline) {
    const value = predicate();
    if (value) {
      return value;
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`timed out waiting for ${what}`);
}

// Samples a meter every 50 ms for `ms` and returns the max RMS and the peak
// frequency seen at that max.
export async function measure(meterGetter, ms) {
  let maxRms = 0;
  let peakHz = 0;
  const end = performance.now() + ms;
  while (performance.now() < end) {
    const meter = meterGetter();
    if (meter) {
      const rms = meter.rms();
      if (rms > maxRms) {
        maxRms = rms;
        peakHz = meter.peakHz();
      }
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return { maxRms, peakHz };
}

// Waits until the meter shows the tone, so a slow start does not fail a step.
async function waitForSound(meterGetter, timeoutMs) {
  await waitFor(() => meterGetter() && meterGetter().rms() > 0.01, timeoutMs, "remote audio");
}

async function finish(run) {
  try {
    await run();
    results.ok = true;
  } catch (error) {
    results.error = String(error && error.stack ? error.stack : error);
  }
  results.events = window.voxgateEvents;
  results.status = document.getElementById("status")?.textContent;
  results.message = document.getElementById("message")?.textContent;
  await post("/test/results", results);
}

function clickKey(key) {
  document.querySelector(`#keypad button[data-key="${CSS.escape(key)}"]`).click();
}

// Resolves when the DTMF sender has played its last tone (tonechange with "").
function tonesFinished(sender, timeoutMs) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("timed out waiting for DTMF tones")), timeoutMs);
    const listener = (event) => {
      if (event.tone === "") {
        clearTimeout(timer);
        sender.removeEventListener("tonechange", listener);
        resolve();
      }
    };
    sender.addEventListener("tonechange", listener);
  });
}

export function runCallerTest(params) {
  const app = window.voxgate;
  const remote = () => app.call?.remoteMeter;
  finish(async () => {
    await waitFor(() => window.voxgateEvents.includes("session"), 10000, "signaling session");
    await checkpoint("caller-ready", { click: "#call" });
    await waitFor(() => window.voxgateEvents.includes("call_state:connected"), 15000, "connected");
    await waitForSound(remote, 15000);
    results.measurements.remote = await measure(remote, 1000);
    await checkpoint("caller-connected");
    await waitFor(() => app.call.dtmfSender?.canInsertDTMF, 10000, "DTMF sender");
    for (const key of params.get("rtp_keys") || "") {
      const finished = tonesFinished(app.call.dtmfSender, 10000);
      clickKey(key);
      await finished;
    }
    await checkpoint("caller-rtp-digits-sent", { expected: params.get("rtp_keys") || "" });
    const viaSignaling = params.get("signaling_keys") || "";
    if (viaSignaling) {
      app.call.sendDigits(viaSignaling, true);
    }
    const expected = (params.get("rtp_keys") || "") + viaSignaling;
    await checkpoint("caller-digits-sent", { expected });
    results.measurements.afterDigits = await measure(remote, 1000);
    document.getElementById("hangup").click();
    await checkpoint("caller-hung-up");
  });
}
