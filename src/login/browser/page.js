// Reads the hosted login page for src/login/browser/page.rs; run through WebDriver "execute script" with one
// argument: {op: "mark" | "snapshot", steps: {mobile|otp|pin: {input, submit}}, error, want: [step], focus: step}.
// Owns: finding each step's input and button (configured selector first, then fallbacks that do not depend on ids
// or classes), and the messages the page shows, with whether each appeared after the last "mark" (set right before a
// click). Never types, clicks, focuses or changes the page's own elements; it only observes.
"use strict";
var arg = arguments[0];

// Fallbacks per step, from the page as documented in shared/docs/upstox.md ("More about the login app") [code].
var SPECS = {
  mobile: {
    name: /mobile|phone/i,
    exclude: /\b(t?otp|pin)\b|password/i,
    attrs: function (e) {
      return (e.type === "tel" || e.inputMode === "numeric" || e.type === "number") && e.maxLength === 10;
    },
    attrsText: "type=tel or inputmode=numeric, maxlength=10",
    button: /get\s*otp|send\s*otp|continue|next|proceed|log\s*in|sign\s*in/i
  },
  otp: {
    name: /\b(t?otp|one[- ]time|verification code|authenticator)\b/i,
    exclude: /\bpin\b|mobile|phone/i,
    attrs: function (e) {
      if (e.type === "password") { return false; }
      if ((e.autocomplete || "").indexOf("one-time-code") !== -1) { return true; }
      return (e.maxLength === 6 || e.maxLength === 7) &&
        (e.inputMode === "numeric" || e.type === "tel" || e.type === "number" || e.type === "text");
    },
    attrsText: "autocomplete=one-time-code or a 6-digit (ddd-ddd) field",
    button: /continue|verify|submit|next|proceed/i
  },
  pin: {
    name: /\bpin\b|passcode/i,
    exclude: /\b(t?otp)\b|mobile|phone/i,
    attrs: function (e) {
      return e.type === "password" && (e.maxLength === 6 || e.inputMode === "numeric" || /6/.test(e.pattern || ""));
    },
    attrsText: "type=password, 6 digits",
    button: /continue|submit|verify|proceed|log\s*in|sign\s*in/i
  }
};
var CODE = /\[\d{7}\]/;
var SKIP_TEXT_TAGS = { LABEL: 1, BUTTON: 1, H1: 1, H2: 1, H3: 1, H4: 1, H5: 1, H6: 1, LEGEND: 1, OPTION: 1, A: 1,
  SCRIPT: 1, STYLE: 1, NOSCRIPT: 1, TITLE: 1, TEMPLATE: 1, INPUT: 1, SELECT: 1, TEXTAREA: 1 };

function clean(text) { return (text || "").replace(/\s+/g, " ").trim(); }
function short(text) { var t = clean(text); return t.length > 60 ? t.slice(0, 57) + "..." : t; }

function visible(e) {
  if (!e || !e.isConnected || !e.getClientRects().length) { return false; }
  var s = window.getComputedStyle(e);
  return s.visibility !== "hidden" && s.display !== "none" && parseFloat(s.opacity || "1") > 0;
}

function query(css) {
  if (!css) { return []; }
  try { return Array.prototype.slice.call(document.querySelectorAll(css)); } catch (err) { return []; }
}

function textInputs() {
  return query("input, textarea").filter(function (e) {
    var t = (e.type || "").toLowerCase();
    return visible(e) && ["hidden", "checkbox", "radio", "submit", "button", "image", "file", "reset"].indexOf(t) === -1;
  });
}

// The accessible name, roughly: aria-label, aria-labelledby, <label>, placeholder, title.
function nameOf(e) {
  var parts = [];
  ["aria-label", "placeholder", "title"].forEach(function (a) { if (e.getAttribute(a)) { parts.push(e.getAttribute(a)); } });
  (e.getAttribute("aria-labelledby") || "").split(/\s+/).forEach(function (id) {
    var t = id && document.getElementById(id);
    if (t) { parts.push(t.textContent); }
  });
  if (e.labels) { for (var i = 0; i < e.labels.length; i++) { parts.push(e.labels[i].textContent); } }
  var unique = [];
  parts.map(clean).forEach(function (p) { if (p && unique.indexOf(p) === -1) { unique.push(p); } });
  return unique.join(" ");
}

// The text of a wrapper that holds only this input and no button (a label-like <span> beside it), or "".
function wrapperText(e) {
  var p = e.parentElement;
  if (!p || p.querySelectorAll("input, textarea").length !== 1 || p.querySelector("button, [role=button]")) { return ""; }
  return clean(p.textContent);
}

function enabled(e) {
  return !e.disabled && !e.readOnly && e.getAttribute("aria-disabled") !== "true";
}

function found(e, how, desc) { return { el: e, how: how, desc: desc, enabled: enabled(e) }; }

function findInput(step) {
  var css = arg.steps[step].input;
  var configured = query(css).filter(visible)[0];
  if (configured) { return found(configured, "configured", css); }
  var spec = SPECS[step];
  var inputs = textInputs();
  var names = inputs.map(nameOf);
  for (var i = 0; i < inputs.length; i++) {
    if (spec.name.test(names[i]) && !spec.exclude.test(names[i])) {
      return found(inputs[i], "fallback", 'label "' + short(names[i]) + '"');
    }
  }
  for (var k = 0; k < inputs.length; k++) {
    var wrapper = wrapperText(inputs[k]);
    if (!names[k] && spec.name.test(wrapper) && !spec.exclude.test(wrapper)) {
      return found(inputs[k], "fallback", 'text beside it "' + short(wrapper) + '"');
    }
  }
  for (var j = 0; j < inputs.length; j++) {
    if (spec.attrs(inputs[j]) && !spec.exclude.test(names[j])) {
      return found(inputs[j], "fallback", "attributes " + spec.attrsText);
    }
  }
  return null;
}

function buttonText(b) { return clean(b.innerText || b.value || b.getAttribute("aria-label") || ""); }

function findButton(step, input) {
  var css = arg.steps[step].submit;
  var configured = query(css).filter(visible)[0];
  if (configured) { return found(configured, "configured", css); }
  if (!input) { return null; }
  var scope = input.form;
  for (var p = input.parentElement, up = 0; !scope && p && up < 6; p = p.parentElement, up++) {
    if (p.querySelector("button, input[type=submit], [role=button]")) { scope = p; }
  }
  if (!scope) { return null; }
  var buttons = Array.prototype.slice.call(scope.querySelectorAll(
    "button, input[type=submit], input[type=button], [role=button]")).filter(visible);
  for (var i = 0; i < buttons.length; i++) {
    if (SPECS[step].button.test(buttonText(buttons[i]))) {
      return found(buttons[i], "fallback", 'button "' + short(buttonText(buttons[i])) + '"');
    }
  }
  if (buttons.length === 1) {
    return found(buttons[0], "fallback", 'the only button "' + short(buttonText(buttons[0])) + '"');
  }
  return null;
}

// Elements with their own text (a non-blank text node child): where messages are.
function ownText(e) {
  for (var n = e.firstChild; n; n = n.nextSibling) {
    if (n.nodeType === 3 && n.nodeValue.trim()) { return true; }
  }
  return false;
}

function textElements(root) {
  var out = [];
  var all = root.querySelectorAll("*");
  for (var i = 0; i < all.length; i++) {
    var e = all[i];
    if (!SKIP_TEXT_TAGS[e.tagName] && ownText(e) && !e.closest("button, label, script, style") && visible(e)) { out.push(e); }
  }
  return out;
}

function alerts() {
  return query(arg.error).concat(query("[role=alert], [role=alertdialog], [role=status], [aria-live]"))
    .filter(function (e) { return e.getAttribute("aria-live") !== "off" && visible(e); });
}

function messageText(e) { var t = clean(e.innerText); return t.length > 500 ? t.slice(0, 500) : t; }

function mark() {
  var old = window.__relogin;
  if (old && old.observer) { old.observer.disconnect(); }
  var state = { touched: new Set(), added: [], baseTexts: {}, baseEls: new WeakMap(), observer: null };
  alerts().concat(textElements(document.body)).forEach(function (e) {
    var t = messageText(e);
    if (t) { state.baseTexts[t] = true; state.baseEls.set(e, t); }
  });
  state.observer = new MutationObserver(function (records) {
    records.forEach(function (r) {
      if (r.type === "characterData") {
        if (r.target.parentElement) { state.touched.add(r.target.parentElement); }
      } else if (r.type === "attributes") {
        state.touched.add(r.target);
      } else {
        for (var i = 0; i < r.addedNodes.length; i++) {
          var n = r.addedNodes[i];
          if (n.nodeType === 1) { state.added.push(n); } else if (n.nodeType === 3 && n.nodeValue.trim()) { state.touched.add(r.target); }
        }
      }
    });
    if (state.added.length > 5000) { state.added = state.added.slice(-2500); }
  });
  state.observer.observe(document.documentElement, { subtree: true, childList: true, characterData: true,
    attributes: true, attributeFilter: ["hidden", "style", "class", "aria-hidden", "open"] });
  window.__relogin = state;
  return true;
}

function snapshot() {
  var state = window.__relogin;
  var reloaded = !state;
  var located = {};
  (arg.want || []).forEach(function (step) {
    var input = findInput(step);
    located[step] = { input: input, button: findButton(step, input && input.el) };
  });
  function touchedIn(e) {
    var hit = false;
    state.touched.forEach(function (t) { if (!hit && e.contains(t)) { hit = true; } });
    return hit;
  }
  function isNew(e, t) {
    return reloaded || state.baseEls.get(e) !== t || touchedIn(e);
  }
  var messages = [];
  var seen = {};
  function add(e, source, fresh) {
    var t = messageText(e);
    if (!t || seen[t]) { return; }
    seen[t] = true;
    messages.push({ text: t, source: source, isNew: fresh, code: CODE.test(t) });
  }
  var body = document.body;
  if (body) {
    alerts().forEach(function (e) { var t = messageText(e); add(e, "alert", isNew(e, t)); });
    if (!reloaded) {
      state.added.forEach(function (e) {
        if (!e.isConnected || !visible(e) || e.querySelector("input, textarea, select")) { return; }
        var t = messageText(e);
        if (t && !state.baseTexts[t]) { add(e, "added", true); }
      });
    }
    var focus = arg.focus && located[arg.focus] && located[arg.focus].input;
    var near = focus && (focus.el.form || (focus.el.parentElement && focus.el.parentElement.parentElement));
    textElements(body).forEach(function (e) {
      var t = messageText(e);
      if (!t) { return; }
      var fresh = reloaded || !state.baseTexts[t] || touchedIn(e);
      if (CODE.test(t)) { add(e, "coded", fresh && isNew(e, t)); } else if (near && near.contains(e)) {
        add(e, "inline", fresh);
      } else if (fresh && !reloaded) { add(e, "text", true); }
    });
  }
  var text = body ? clean(body.innerText) : "";
  return {
    url: location.href,
    title: document.title || "",
    contentType: document.contentType || "",
    ready: document.readyState === "complete",
    text: text.slice(0, 2000),
    inputs: textInputs().length,
    reloaded: reloaded,
    located: located,
    messages: messages
  };
}

return arg.op === "mark" ? mark() : snapshot();
