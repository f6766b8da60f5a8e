// The hosted payment page's behaviour: checks as the payer types, the card form and the
// one-time code sent to the page's own JSON calls (session cookie + X-ePay-CSRF), and the
// progress polled until the receipt or the end. No third-party code; nothing is stored.
(function () {
  "use strict";

  var POLL_MS = 700;
  var S = JSON.parse(document.getElementById("epay-strings").textContent);
  var initial = document.getElementById("epay-status");
  if (!initial) return; // a page without a payer session: nothing to drive
  var csrfMeta = document.querySelector('meta[name="epay-csrf"]');
  var CSRF = csrfMeta ? csrfMeta.content : "";
  var BASE = window.location.pathname.replace(/\/+$/, "");
  var STEPS = ["authorising", "confirming", "capturing"];
  var pollTimer = null;
  var busy = false;

  function $(id) { return document.getElementById(id); }
  // An Arabic keyboard types Arabic-Indic (or Persian) digits: they are the same numbers.
  function western(value) {
    return value.replace(/[\u0660-\u0669\u06f0-\u06f9]/g, function (c) {
      return String(c.charCodeAt(0) & 0xf);
    });
  }
  function val(id) { return western($(id).value); }
  function digits(value) { return western(value).replace(/[\s-]/g, ""); }

  // --- checks -------------------------------------------------------------------------

  function luhn(number) {
    if (!/^[0-9]{12,19}$/.test(number)) return false;
    var sum = 0;
    for (var i = 0; i < number.length; i++) {
      var d = +number[number.length - 1 - i];
      if (i % 2 === 1) { d *= 2; if (d > 9) d -= 9; }
      sum += d;
    }
    return sum % 10 === 0;
  }

  function isAmex(number) { return /^3[47]/.test(number); }

  function fullYear(value) {
    var y = digits(value);
    if (/^[0-9]{2}$/.test(y)) return 2000 + +y;
    return /^[0-9]{4}$/.test(y) ? +y : NaN;
  }

  function expiryOk() {
    var m = digits($("cc-exp-month").value), y = fullYear($("cc-exp-year").value);
    if (!/^[0-9]{1,2}$/.test(m) || +m < 1 || +m > 12 || !(y >= 2000 && y <= 2100)) return false;
    var now = new Date();
    return y * 12 + +m >= now.getFullYear() * 12 + now.getMonth() + 1;
  }

  // Each field's check: the message key when it fails, "" when it passes.
  var CHECKS = {
    "ed-number": function (v) {
      var n = digits(v);
      if (n.length !== 16) return "err_e_dirham_number";
      return luhn(n) ? "" : "err_card_number";
    },
    "ed-pin": function (v) { return /^[0-9]{4,6}$/.test(v) ? "" : "err_pin"; },
    "cc-number": function (v) { return luhn(digits(v)) ? "" : "err_card_number"; },
    "cc-exp-month": function () { return expiryOk() ? "" : "err_expiry"; },
    "cc-exp-year": function () { return expiryOk() ? "" : "err_expiry"; },
    "cc-cvv": function (v) {
      var want = isAmex(digits($("cc-number").value)) ? 4 : 3;
      return new RegExp("^[0-9]{" + want + "}$").test(v) ? "" : "err_cvv";
    },
    "cc-name": function (v) { return v.trim().length >= 1 && v.length <= 100 ? "" : "err_name"; },
    "otp": function (v) { return /^[0-9]{4,10}$/.test(v.trim()) ? "" : "err_otp"; }
  };

  function showFieldError(id, key) {
    var input = $(id), error = $(id + "-error");
    if (!input || !error) return;
    error.textContent = key ? S[key] : "";
    if (key) input.setAttribute("aria-invalid", "true");
    else input.removeAttribute("aria-invalid");
  }

  function check(id) {
    var key = CHECKS[id](id === "cc-name" ? $(id).value : val(id));
    showFieldError(id, key);
    return key;
  }

  function touched(input) { return input.dataset.touched === "1"; }

  Object.keys(CHECKS).forEach(function (id) {
    var input = $(id);
    if (!input) return;
    input.addEventListener("blur", function () {
      if (input.value !== "") { input.dataset.touched = "1"; check(id); }
    });
    input.addEventListener("input", function () {
      // As the payer types: once a field was left (or the form sent), its message follows
      // each keystroke; the expiry's two fields are checked together.
      if (touched(input)) check(id);
      if (id === "cc-exp-month" || id === "cc-exp-year") {
        ["cc-exp-month", "cc-exp-year"].forEach(function (other) { if (touched($(other))) check(other); });
      }
      if (id === "cc-number" && touched($("cc-cvv"))) check("cc-cvv");
    });
  });

  // --- the method choice ----------------------------------------------------------------

  function method() {
    var chosen = document.querySelector('input[name="method"]:checked');
    return chosen ? chosen.value : "e_dirham";
  }

  function showMethod() {
    ["e_dirham", "card"].forEach(function (m) {
      var set = $("fields-" + m);
      set.hidden = m !== method();
      set.disabled = m !== method();
    });
  }

  Array.prototype.forEach.call(document.querySelectorAll('input[name="method"]'), function (r) {
    r.addEventListener("change", showMethod);
  });

  // --- talking to the page's calls --------------------------------------------------------

  function call(path, body) {
    var init = {
      method: body === undefined ? "GET" : "POST",
      credentials: "same-origin",
      cache: "no-store",
      headers: { "X-ePay-CSRF": CSRF, "Accept": "application/json" }
    };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    return fetch(BASE + path, init).then(function (response) {
      return response.json().catch(function () { return {}; }).then(function (data) {
        return { status: response.status, data: data };
      });
    });
  }

  function notice(key) {
    var box = $("notice");
    box.textContent = key ? (S["msg_" + key] || S.msg_failed) : "";
    box.hidden = !key;
    if (key) box.focus();
  }

  // A problem+json answer: what the payer is told (never more than its stable code says).
  function problem(data, fieldIds) {
    var code = data && data.code;
    if (code === "validation_failed") {
      var first = null;
      (data.errors || []).forEach(function (e) {
        var id = fieldIds[e.field];
        if (id) { showFieldError(id, errKeyFor(id)); first = first || id; }
      });
      notice("invalid");
      if (first) $(first).focus();
    } else if (code === "too_many_attempts" || code === "pin_attempts_exceeded") {
      notice(code);
    } else if (code === "not_awaiting_method" || code === "not_awaiting_challenge") {
      refresh();
    } else if (code === "payer_session_expired" || code === "csrf_token_invalid") {
      notice("session_expired");
    } else {
      notice("failed");
    }
  }

  function errKeyFor(id) {
    return { "ed-number": "err_e_dirham_number", "ed-pin": "err_pin", "cc-number": "err_card_number",
      "cc-exp-month": "err_expiry", "cc-exp-year": "err_expiry", "cc-cvv": "err_cvv",
      "cc-name": "err_name", "otp": "err_otp" }[id];
  }

  // --- the views --------------------------------------------------------------------------

  var SECTIONS = { form: "pay", challenge: "challenge", progress: "progress", receipt: "receipt", ended: "ended" };

  function methodText(m) {
    if (!m) return "";
    var brand = m.type === "e_dirham" ? S.brand_e_dirham
      : ({ visa: "Visa", mastercard: "Mastercard" }[m.brand] || "Card");
    return brand + " \u2022\u2022\u2022\u2022 " + m.last4;
  }

  function setReturn(id, url) {
    var link = $(id);
    if (!link) return;
    if (url && /^https?:\/\//i.test(url)) { link.href = url; link.hidden = false; }
    else link.hidden = true;
  }

  function apply(view) {
    Object.keys(SECTIONS).forEach(function (v) { $(SECTIONS[v]).hidden = v !== view.view; });
    if (view.view === "form") {
      notice(view.message);
      setBusy(false);
    } else if (view.view === "challenge") {
      notice(null);
      $("otp-button").disabled = false;
      $("otp").focus();
    } else if (view.view === "progress") {
      var reached = STEPS.indexOf(view.step);
      Array.prototype.forEach.call(document.querySelectorAll(".steps li"), function (li, i) {
        li.className = i < reached ? "done" : i === reached ? "current" : "";
        if (i === reached) li.setAttribute("aria-current", "step"); else li.removeAttribute("aria-current");
      });
      var live = $("progress-live"), text = S["step_" + view.step] || "";
      if (live.textContent !== text) live.textContent = text;
    } else if (view.view === "receipt") {
      notice(null);
      var r = view.receipt || {};
      $("r-number").textContent = r.number || "";
      $("r-date").textContent = r.issued_at_text ? r.issued_at_text + " (" + S.dubai_time + ")" : "";
      $("r-confirmation").textContent = view.department_confirmation || "";
      $("r-method").textContent = methodText(view.method);
      setReturn("return-link", view.return_url);
      $("receipt-heading").focus();
    } else if (view.view === "ended") {
      notice(null);
      $("ended-message").textContent = S["msg_" + view.message] || S.msg_failed;
      setReturn("ended-return-link", view.return_url);
    }
    schedulePoll(view.view === "progress");
  }

  function schedulePoll(on) {
    if (pollTimer) { clearTimeout(pollTimer); pollTimer = null; }
    if (on) pollTimer = setTimeout(refresh, POLL_MS);
  }

  function refresh() {
    call("/status").then(function (answer) {
      if (answer.status === 200) apply(answer.data);
      else if (answer.status === 401 || answer.status === 403) notice("session_expired");
      else schedulePoll(true);
    }, function () { schedulePoll(true); });
  }

  function setBusy(on) {
    busy = on;
    var button = $("pay-button");
    button.disabled = on;
    button.setAttribute("aria-busy", on ? "true" : "false");
    if (on) { button.dataset.label = button.textContent; button.textContent = S.paying; }
    else if (button.dataset.label) button.textContent = button.dataset.label;
  }

  function clearSecrets() {
    ["ed-pin", "cc-cvv"].forEach(function (id) { $(id).value = ""; delete $(id).dataset.touched; showFieldError(id, ""); });
  }

  // --- the card form ----------------------------------------------------------------------

  var FIELD_IDS = {
    e_dirham: { card_number: "ed-number", pin: "ed-pin" },
    card: { card_number: "cc-number", expiry_month: "cc-exp-month", expiry_year: "cc-exp-year",
      cvv: "cc-cvv", cardholder_name: "cc-name" }
  };

  $("pay-form").addEventListener("submit", function (event) {
    event.preventDefault();
    if (busy) return; // a second click while the first is in flight does nothing
    var m = method(), ids = FIELD_IDS[m], failed = null;
    Object.keys(ids).forEach(function (field) {
      var id = ids[field];
      $(id).dataset.touched = "1";
      if (check(id) && !failed) failed = id;
    });
    if (failed) { notice("fix_fields"); $(failed).focus(); return; }
    var body = m === "e_dirham"
      ? { method: "e_dirham", card_number: digits($("ed-number").value), pin: val("ed-pin") }
      : { method: "card", card_number: digits($("cc-number").value),
          expiry_month: +digits($("cc-exp-month").value), expiry_year: fullYear($("cc-exp-year").value),
          cvv: val("cc-cvv"), cardholder_name: $("cc-name").value.trim() };
    setBusy(true);
    notice(null);
    call("/authorise", body).then(function (answer) {
      if (answer.status === 200 || answer.status === 202) {
        clearSecrets();
        apply(answer.status === 202 && answer.data.view === "form"
          ? Object.assign({}, answer.data, { view: "progress", step: "authorising" }) : answer.data);
      } else {
        setBusy(false);
        problem(answer.data, ids);
      }
    }, function () { setBusy(false); notice("network"); });
  });

  $("otp-form").addEventListener("submit", function (event) {
    event.preventDefault();
    var button = $("otp-button");
    if (button.disabled) return;
    $("otp").dataset.touched = "1";
    if (check("otp")) { $("otp").focus(); return; }
    button.disabled = true;
    call("/3ds", { otp: val("otp").trim() }).then(function (answer) {
      $("otp").value = "";
      if (answer.status === 200 || answer.status === 202) {
        apply(answer.status === 202 && answer.data.view === "challenge"
          ? Object.assign({}, answer.data, { view: "progress", step: "authorising" }) : answer.data);
      } else {
        button.disabled = false;
        problem(answer.data, { otp: "otp" });
      }
    }, function () { button.disabled = false; notice("network"); });
  });

  $("print-button").addEventListener("click", function () { window.print(); });

  showMethod();
  apply(JSON.parse(initial.textContent));
})();
