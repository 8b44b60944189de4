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
    const [track] = app.call.localStream.getAudioTracks();
    const { echoCancellation, noiseSuppression, autoGainControl } = track.getSettings();
    results.measurements.microphone = { echoCancellation, noiseSuppression, autoGainControl };
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
    if (params.has("server_hangup")) {
      await checkpoint("caller-digits-sent", { expected, hangup_by_server: true });
      await waitFor(() => window.voxgateEvents.includes("hangup"), 15000, "hangup from server");
      results.measurements.statusAfterServerHangup = text("status");
      results.measurements.hangupButtonDisabled = document.getElementById("hangup").disabled;
      return;
    }
    await checkpoint("caller-digits-sent", { expected });
    results.measurements.afterDigits = await measure(remote, 1000);

    const sessions = () => window.voxgateEvents.filter((e) => e === "session").length;
    app.signaling.dropForTest();
    await waitFor(() => text("message") !== "", 5000, "signaling lost message");
    results.measurements.lostMessage = text("message");
    await waitFor(() => sessions() === 2, 20000, "signaling reconnect");
    await waitFor(() => text("message") === "", 5000, "message cleared after reconnect");
    results.measurements.afterReconnect = await measure(remote, 1000);
    results.measurements.statusAfterReconnect = text("status");
    await checkpoint("caller-reconnected");

    document.getElementById("hangup").click();
    await checkpoint("caller-hung-up");
  });
}

// The microphone permission is denied by the test server before the click.
export function runCallerDeniedTest() {
  finish(async () => {
    await waitFor(() => window.voxgateEvents.includes("session"), 10000, "signaling session");
    await checkpoint("caller-ready", { click: "#call", permission: "denied" });
    await waitFor(() => text("message") !== "", 15000, "microphone error message");
    results.measurements.deniedMessage = text("message");
    results.measurements.callButtonEnabled = !document.getElementById("call").disabled;
    await checkpoint("caller-mic-denied");
  });
}

function presence() {
  return window.voxgate.state.presence || {};
}

async function waitForPresence(wanted, reason, timeoutMs = 15000) {
  await waitFor(
    () => presence().state === wanted && (reason === undefined || presence().reason === reason),
    timeoutMs,
    `agent state ${wanted}`,
  );
}

async function waitForCallState(wanted, timeoutMs = 15000) {
  await waitFor(() => window.voxgate.state.callState === wanted, timeoutMs, `call state ${wanted}`);
}

function text(id) {
  return document.getElementById(id).textContent;
}

export function runAgentTest(params) {
  const app = window.voxgate;
  const remote = () => app.state.call?.remoteMeter;
  const m = results.measurements;
  finish(async () => {
    document.getElementById("user").value = params.get("user") || "";
    document.getElementById("password").value = params.get("password") || "";
    await checkpoint("agent-login-form");
    document.getElementById("login").click();
    await waitForPresence("away", "logged in");

    document.getElementById("away-reason").value = "lunch";
    document.getElementById("set-away").click();
    await waitForPresence("away", "lunch");
    m.awayBadge = text("state-badge");
    m.awayReason = text("state-reason");
    document.getElementById("set-available").click();
    await waitForPresence("available");

    await checkpoint("agent-available");
    await waitFor(() => !document.getElementById("incoming").classList.contains("hidden"), 15000, "incoming call");
    await waitForPresence("ringing");
    m.context = {
      caller: text("ctx-caller"),
      queue: text("ctx-queue"),
      path: text("ctx-path"),
      words: text("ctx-words"),
      intent: text("ctx-intent"),
      priority: text("ctx-priority"),
      priority_reason: text("ctx-priority-reason"),
      waiting: text("ctx-waiting"),
    };
    await checkpoint("agent-incoming", { click: "#answer" });
    await waitForCallState("connected");
    await checkpoint("agent-connected");
    await waitFor(() => remote() && remote().rms() > 0.01, 15000, "server tone");
    m.connected = await measure(remote, 1000);
    m.busyBadge = presence().state;

    document.getElementById("hold").click();
    await waitForCallState("held");
    await checkpoint("agent-held");
    // Audio already in the browser's jitter buffer still plays for a moment.
    await waitFor(() => remote().rms() < 0.005, 5000, "silence on hold");
    m.held = await measure(remote, 1000);
    await checkpoint("agent-hold-measured");
    document.getElementById("hold").click();
    await waitForCallState("connected");
    await checkpoint("agent-resumed");
    await waitFor(() => remote() && remote().rms() > 0.01, 15000, "server tone after hold");
    m.resumed = await measure(remote, 1000);

    document.getElementById("mute").click();
    await checkpoint("agent-muted");
    m.mutedLabel = document.getElementById("mute").textContent;
    await measure(remote, 1000);
    await checkpoint("agent-mute-measured");
    document.getElementById("mute").click();
    await checkpoint("agent-unmuted");
    await measure(remote, 1500);

    const finished = tonesFinished(app.state.call.dtmfSender, 10000);
    clickKey("5");
    await finished;
    await checkpoint("agent-digits-sent", { expected: "5" });

    const sessions = () => window.voxgateEvents.filter((e) => e === "session").length;
    const badge = document.getElementById("state-badge");
    app.state.signaling.dropForTest();
    await waitFor(() => badge.classList.contains("stale"), 5000, "stale state badge");
    m.whileDropped = { reason: text("state-reason") };
    await waitFor(() => sessions() === 2, 20000, "signaling reconnect");
    await waitFor(() => window.voxgateEvents.slice(-3).includes("call_state:connected"), 10000, "call state after reconnect");
    m.afterReconnect = {
      presence: presence().state,
      callState: app.state.callState,
      message: text("message"),
      stale: badge.classList.contains("stale"),
    };
    m.reconnected = await measure(remote, 1000);
    await checkpoint("agent-reconnected");

    document.getElementById("hangup").click();
    await waitForPresence("wrap_up");
    await waitFor(() => text("wrap-up-left") !== "", 5000, "wrap-up countdown");
    m.wrapUpText = text("wrap-up-left");
    await checkpoint("agent-wrap-up");
    await waitForPresence("available", undefined, 20000);

    await checkpoint("agent-second-call");
    await waitFor(() => !document.getElementById("incoming").classList.contains("hidden"), 15000, "second call");
    await checkpoint("agent-incoming-2", { click: "#answer" });
    await waitForCallState("connected");
    await checkpoint("agent-connected-2");
    document.getElementById("transfer-kind").value = "queue";
    document.getElementById("transfer-target").value = "sales";
    document.getElementById("transfer").click();
    await waitFor(() => !app.state.call, 15000, "call end after transfer");
    await waitForPresence("wrap_up");
    await checkpoint("agent-transferred");
  });
}
