// The portal's upload area: each chosen or dropped file is sent by tus (tus-js-client, resumable:
// a broken connection resumes where the server's staged bytes end), with a progress bar and a
// Cancel button; the recent-uploads table is refreshed while the page is visible. Without this
// script the form posts the files to /portal/upload (not resumable); nothing here is needed to use
// the page. File names are shown with textContent only, never as HTML.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  var form = document.getElementById("upload");
  if (!form || !window.tus || !window.tus.isSupported) {
    return;
  }
  var input = document.getElementById("files");
  var drop = document.getElementById("drop");
  var list = document.getElementById("progress");
  var submit = document.getElementById("upload-submit");
  var tokenMeta = document.querySelector('meta[name="csrf-token"]');
  var csrf = tokenMeta ? tokenMeta.getAttribute("content") : "";
  var endpoint = form.dataset.endpoint;
  var folder = form.dataset.folder;
  var recentUrl = form.dataset.recent;
  var chunk = Number(form.dataset.chunk) || Infinity;
  var pollSeconds = Number(form.dataset.poll) || 0;
  var parallel = 3;
  var running = 0;
  var waiting = [];
  var polling = null;
  var stopped = false;
  // Leaving the page (a reload, a link): the page and its script stay until the next one arrives,
  // and a request that ends meanwhile still succeeds here. The user never sees that, and expects
  // choosing the file again to go on with the same upload, so such an upload stays remembered (the
  // next page's HEAD finds it complete: nothing is sent twice). An upload this page showed as
  // received is forgotten: choosing its file again sends it anew, as the user asked.
  var leaving = false;
  var finishedHere = {}; // upload URL -> true: never resumed again from this page
  var keptWhileLeaving = [];
  // An unfinished upload is kept 24 h: an older remembered one is no resume but a new sending.
  var resumeMilliseconds = 24 * 3600 * 1000;
  window.addEventListener("beforeunload", function () {
    leaving = true;
  });

  function forget(upload) {
    upload.findPreviousUploads().then(function (previous) {
      previous.forEach(function (entry) {
        if (entry.uploadUrl === upload.url) {
          upload.options.urlStorage.removeUpload(entry.urlStorageKey);
        }
      });
    });
  }

  form.classList.add("scripted");
  if (submit) {
    submit.hidden = true; // each file starts as soon as it is chosen
  }

  function sizeText(bytes) {
    var units = ["bytes", "KiB", "MiB", "GiB", "TiB"];
    var value = bytes;
    var unit = 0;
    while (value >= 1024 && unit < units.length - 1) {
      value /= 1024;
      unit += 1;
    }
    return unit === 0 ? bytes + " bytes" : value.toFixed(1) + " " + units[unit];
  }

  function serverMessage(error) {
    var response = error && error.originalResponse;
    if (response) {
      if (response.getStatus() === 401) {
        stopPolling();
        return "your session ended: log in again (the upload resumes after that)";
      }
      try {
        var body = JSON.parse(response.getBody());
        if (body && body.message) {
          return body.message;
        }
      } catch (ignored) {
        // not JSON: fall through to the generic text
      }
    }
    return "the upload stopped: " + (error && error.message ? error.message.split("\n")[0] : "unknown error");
  }

  function button(text, className) {
    var b = document.createElement("button");
    b.type = "button";
    b.className = className;
    b.textContent = text;
    return b;
  }

  function addFile(file) {
    var item = document.createElement("li");
    item.className = "upload-item";
    var name = document.createElement("span");
    name.className = "upload-name";
    name.textContent = file.name;
    var bar = document.createElement("progress");
    bar.max = Math.max(file.size, 1);
    bar.value = 0;
    bar.setAttribute("aria-label", "Uploading " + file.name);
    var status = document.createElement("span");
    status.className = "upload-status";
    status.textContent = "waiting";
    var cancel = button("Cancel", "secondary cancel");
    cancel.setAttribute("aria-label", "Cancel " + file.name);
    var retry = button("Retry", "retry");
    retry.hidden = true;
    retry.setAttribute("aria-label", "Retry " + file.name);
    item.append(name, bar, status, cancel, retry);
    list.appendChild(item);

    var finished = false;
    var upload = new window.tus.Upload(file, {
      endpoint: endpoint,
      metadata: { filename: file.name, folder: folder },
      headers: { "X-CSRF-Token": csrf },
      chunkSize: chunk,
      retryDelays: [0, 1000, 3000, 5000, 10000, 20000, 30000],
      removeFingerprintOnSuccess: false, // forget() below, unless the page is being left
      storeFingerprintForResuming: true,
      onProgress: function (sent, total) {
        bar.value = sent;
        var percent = total ? Math.floor((sent / total) * 100) : 100;
        status.textContent = percent + " % of " + sizeText(total);
      },
      onSuccess: function () {
        finished = true;
        finishedHere[upload.url] = true;
        if (leaving) {
          keptWhileLeaving.push(upload);
        } else {
          forget(upload);
        }
        bar.value = bar.max;
        status.textContent = "received — checking…";
        item.classList.add("done");
        cancel.remove();
        retry.remove();
        done();
        refresh();
      },
      onError: function (error) {
        status.textContent = serverMessage(error);
        item.classList.add("failed");
        retry.hidden = false;
        done();
      },
    });

    function start() {
      running += 1;
      status.textContent = "starting…";
      upload.findPreviousUploads().then(function (previous) {
        var resumable = previous.filter(function (entry) {
          var age = Date.now() - Date.parse(entry.creationTime);
          return !finishedHere[entry.uploadUrl] && age < resumeMilliseconds;
        });
        if (resumable.length) {
          upload.resumeFromPreviousUpload(resumable[0]);
        }
        upload.start();
      });
    }

    cancel.addEventListener("click", function () {
      if (finished) {
        return;
      }
      finished = true;
      var index = waiting.indexOf(start);
      if (index >= 0) {
        waiting.splice(index, 1);
      } else {
        done();
      }
      upload.abort(true).then(
        function () {
          status.textContent = "cancelled";
        },
        function (error) {
          status.textContent = "cancelled; " + serverMessage(error);
        }
      );
      item.classList.add("cancelled");
      cancel.remove();
      retry.remove();
    });
    retry.addEventListener("click", function () {
      retry.hidden = true;
      item.classList.remove("failed");
      running += 1;
      status.textContent = "resuming…";
      upload.start();
    });
    waiting.push(start);
    next();
  }

  function done() {
    running = Math.max(0, running - 1);
    next();
  }

  function next() {
    while (running < parallel && waiting.length) {
      waiting.shift()();
    }
  }

  function addFiles(files) {
    if (leaving) {
      // Still here (the navigation did not happen): uploads that ended meanwhile were shown.
      leaving = false;
      keptWhileLeaving.splice(0).forEach(forget);
    }
    for (var i = 0; i < files.length; i += 1) {
      addFile(files[i]);
    }
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    addFiles(input.files);
    input.value = "";
  });
  input.addEventListener("change", function () {
    addFiles(input.files);
    input.value = "";
  });
  drop.addEventListener("dragover", function (event) {
    event.preventDefault();
    drop.classList.add("dragging");
  });
  drop.addEventListener("dragleave", function () {
    drop.classList.remove("dragging");
  });
  drop.addEventListener("drop", function (event) {
    event.preventDefault();
    drop.classList.remove("dragging");
    if (event.dataTransfer && event.dataTransfer.files) {
      addFiles(event.dataTransfer.files);
    }
  });

  // The recent uploads: the server renders the rows (escaped); a <template> parses them, no script runs.
  function refresh() {
    var body = document.getElementById("recent-body");
    if (!recentUrl || !body || stopped) {
      return;
    }
    fetch(recentUrl, { credentials: "same-origin", headers: { Accept: "*/*" } })
      .then(function (response) {
        if (response.status === 401) {
          stopPolling();
          return null;
        }
        return response.ok ? response.text() : null;
      })
      .then(function (html) {
        if (html === null) {
          return;
        }
        var holder = document.createElement("template");
        holder.innerHTML = html;
        var fresh = holder.content.querySelector("#recent-body");
        var current = document.getElementById("recent-body");
        if (fresh && current) {
          current.replaceWith(fresh);
        }
      })
      .catch(function () {
        // the next poll tries again
      });
  }

  function stopPolling() {
    stopped = true;
    if (polling) {
      clearInterval(polling);
      polling = null;
    }
  }

  if (pollSeconds > 0) {
    polling = setInterval(function () {
      if (document.visibilityState === "visible") {
        refresh();
      }
    }, pollSeconds * 1000);
  }
});
