// certdesk console: the "Send" confirmation dialog, live email states, and
// the CSR preview on the order form. Every page works without this script.
(function () {
  'use strict';

  function csrf() {
    var el = document.getElementById('csrf-token') || document.getElementById('form-csrf');
    return el ? (el.dataset.token || el.value) : '';
  }

  function post(url, body) {
    return fetch(url, {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'Accept': 'application/json', 'Content-Type': 'application/json', 'X-CSRF-Token': csrf() },
      body: body ? JSON.stringify(body) : ''
    }).then(function (res) {
      return res.json().catch(function () { return {}; }).then(function (data) { return { status: res.status, data: data }; });
    });
  }

  function setRowState(orderId, label, cls) {
    var row = document.getElementById('order-' + orderId);
    if (!row) return;
    var el = row.querySelector('.email-state');
    if (!el) return;
    el.textContent = label;
    el.className = 'email-state ' + cls;
  }

  // Follows one request until the mail server took it (or it failed).
  function follow(orderId, requestId, tries) {
    if (tries > 90) return;
    setTimeout(function () {
      fetch('/console/ssl/orders/' + orderId + '/email-status?request=' + encodeURIComponent(requestId), {
        credentials: 'same-origin', headers: { 'Accept': 'application/json' }
      }).then(function (r) { return r.json(); }).then(function (s) {
        if (!s || !s.label) return;
        setRowState(orderId, s.label + (s.error && s.state === 'failed' ? ': ' + s.error : ''), s.class);
        if (!s.done) follow(orderId, requestId, tries + 1);
      }).catch(function () { follow(orderId, requestId, tries + 1); });
    }, tries === 0 ? 300 : 1000);
  }

  function setupResendDialog() {
    var dialog = document.getElementById('resend-dialog');
    if (!dialog || typeof dialog.showModal !== 'function') return;
    var current = null;
    var confirm = document.getElementById('resend-confirm');
    var error = document.getElementById('resend-error');
    document.querySelectorAll('form.send-form').forEach(function (form) {
      form.addEventListener('submit', function (ev) {
        ev.preventDefault();
        current = form.dataset;
        document.getElementById('resend-recipient').textContent = current.recipient;
        document.getElementById('resend-ca').textContent = current.ca;
        error.hidden = true;
        confirm.disabled = false;
        dialog.showModal();
        confirm.focus();
      });
    });
    confirm.addEventListener('click', function () {
      if (!current) return;
      confirm.disabled = true;
      var orderId = current.order;
      post('/console/ssl/orders/' + orderId + '/resend').then(function (r) {
        if (r.status === 202) {
          dialog.close();
          var notice = document.getElementById('notice');
          notice.textContent = r.data.notice;
          notice.hidden = false;
          setRowState(orderId, r.data.state_label, 'email-' + r.data.state);
          follow(orderId, r.data.request_id, 0);
        } else {
          error.textContent = r.data.error || ('HTTP ' + r.status);
          error.hidden = false;
        }
      }).catch(function (e) {
        error.textContent = String(e);
        error.hidden = false;
        confirm.disabled = false;
      });
    });
  }

  function setupConfirmForms() {
    document.querySelectorAll('form.confirm').forEach(function (form) {
      form.addEventListener('submit', function (ev) {
        if (!window.confirm(form.dataset.confirm)) ev.preventDefault();
      });
    });
  }

  function setupOrderForm() {
    var csr = document.getElementById('csr');
    if (!csr) return;
    var file = document.getElementById('csr-file');
    var summary = document.getElementById('csr-summary');
    var errorEl = document.getElementById('csr-error');
    var approver = document.getElementById('approver_email');
    var ca = document.getElementById('ca');
    var timer = null;
    function decode() {
      var text = csr.value.trim();
      if (!text) { summary.hidden = true; errorEl.hidden = true; return; }
      post('/console/csr/decode', { csr: text, ca: ca ? ca.value : null }).then(function (r) {
        if (r.status === 200) {
          summary.innerHTML = r.data.html;
          summary.hidden = false;
          errorEl.hidden = true;
          csr.closest('.field').classList.remove('invalid');
          var chosen = approver.value;
          while (approver.options.length > 1) approver.remove(1);
          r.data.approvers.forEach(function (a) {
            var o = document.createElement('option');
            o.value = a; o.textContent = a; o.selected = a === chosen;
            approver.appendChild(o);
          });
        } else {
          summary.hidden = true;
          errorEl.textContent = r.data.error || ('HTTP ' + r.status);
          errorEl.hidden = false;
          csr.closest('.field').classList.add('invalid');
        }
      });
    }
    csr.addEventListener('input', function () { clearTimeout(timer); timer = setTimeout(decode, 250); });
    if (ca) ca.addEventListener('change', decode);
    if (file) file.addEventListener('change', function () {
      if (!file.files.length) return;
      file.files[0].text().then(function (t) { csr.value = t; decode(); });
    });
    if (csr.value.trim() && summary.hidden) decode();
  }

  // Import form: files are read into the text fields; a PKCS#12 file is
  // sent as base64.
  function setupImportForm() {
    document.querySelectorAll('input.load-into').forEach(function (input) {
      input.addEventListener('change', function () {
        if (!input.files.length) return;
        input.files[0].text().then(function (t) { document.getElementById(input.dataset.target).value = t; });
      });
    });
    var p12 = document.getElementById('pkcs12-file');
    if (p12) p12.addEventListener('change', function () {
      if (!p12.files.length) return;
      p12.files[0].arrayBuffer().then(function (buf) {
        var bytes = new Uint8Array(buf), s = '';
        for (var i = 0; i < bytes.length; i++) s += String.fromCharCode(bytes[i]);
        document.getElementById('pkcs12').value = btoa(s);
      });
    });
  }

  document.addEventListener('DOMContentLoaded', function () {
    setupImportForm();
    setupResendDialog();
    setupConfirmForms();
    setupOrderForm();
    // The Security menu closes when focus or a click goes elsewhere.
    document.addEventListener('click', function (ev) {
      document.querySelectorAll('details.menu[open]').forEach(function (d) {
        if (!d.contains(ev.target)) d.removeAttribute('open');
      });
    });
  });
})();
