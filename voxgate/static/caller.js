// The caller page: dial the contact center, keypad, status, level meters.
import {
  PeerCall, Signaling, applyStrings, drawMeter, loadStrings, microphoneError, newCallId, translator,
} from "./softphone.js";

const params = new URLSearchParams(location.search);
const destination = params.get("to") || "default";
const $ = (id) => document.getElementById(id);

const t = translator(await loadStrings(params.get("lang")));
applyStrings(t);

const audioContext = new AudioContext();
let call = null;
let signaling = null;

function setStatus(key, values) {
  $("status").textContent = t(key, values);
  $("status").dataset.state = key;
}

function showMessage(text) {
  $("message").textContent = text;
}

function setInCall(inCall) {
  $("call").disabled = inCall;
  $("hangup").disabled = !inCall;
  for (const key of $("keypad").querySelectorAll("button")) {
    key.disabled = !inCall;
  }
}

function endCall(statusKey = "status.ended") {
  call?.close();
  call = null;
  setInCall(false);
  setStatus(statusKey);
  drawMeter($("mic-meter"), null);
  drawMeter($("remote-meter"), null);
}

function onMessage(message) {
  window.voxgateEvents.push(message.type + (message.state ? ":" + message.state : ""));
  switch (message.type) {
    case "answer":
      if (call && message.call_id === call.callId) {
        call.accept(message.sdp).catch((error) => showMessage(t("error.call_failed", { message: error.message })));
      }
      break;
    case "call_state":
      if (call && message.call_id === call.callId && message.state !== "ended") {
        setStatus(`status.${message.state}`);
      }
      break;
    case "hangup":
      if (call && message.call_id === call.callId) {
        endCall();
      }
      break;
    case "error":
      showMessage(t("error.server", { message: message.message }));
      if (call && message.call_id === call.callId && message.code === "bad_sdp") {
        endCall();
      }
      break;
  }
}

async function startSignaling() {
  const response = await fetch("/api/webrtc/guest", { method: "POST" });
  if (!response.ok) {
    setStatus("status.login_failed", { reason: response.status });
    return;
  }
  const { token } = await response.json();
  signaling = new Signaling(token, {
    onMessage,
    onLost: () => showMessage(t("status.signaling_lost")),
    onReplaced: () => showMessage(t("status.replaced")),
    onReconnected: () => showMessage(""),
    onRejected: (reason) => setStatus("status.login_failed", { reason }),
  });
  signaling.connect();
}

async function placeCall() {
  showMessage("");
  await audioContext.resume();
  setInCall(true);
  setStatus("status.connecting");
  call = new PeerCall(newCallId(), signaling, $("remote-audio"), audioContext);
  call.onRemoteMeter = (meter) => drawMeter($("remote-meter"), meter);
  try {
    await call.start({ type: "call", to: destination });
    drawMeter($("mic-meter"), call.localMeter);
    setStatus("status.ringing");
  } catch (error) {
    showMessage(microphoneError(t, error));
    endCall("status.idle");
  }
}

function hangUp() {
  if (call) {
    signaling.send({ type: "hangup", call_id: call.callId, reason: "caller hung up" });
    endCall();
  }
}

for (const key of "123456789*0#") {
  const button = document.createElement("button");
  button.textContent = key;
  button.dataset.key = key;
  button.addEventListener("click", () => call?.sendDigits(key));
  $("keypad").append(button);
}

$("call").addEventListener("click", placeCall);
$("hangup").addEventListener("click", hangUp);
window.voxgateEvents = [];
window.voxgate = {
  get call() { return call; },
  get signaling() { return signaling; },
  placeCall,
  hangUp,
};
setInCall(false);
setStatus("status.idle");
await startSignaling();

if (params.has("autotest")) {
  const { runCallerTest, runCallerDeniedTest } = await import("./autotest.js");
  if (params.get("autotest") === "denied") {
    runCallerDeniedTest();
  } else {
    runCallerTest(params);
  }
}
