// The main menu on narrow screens: folded behind the "Menu" button. Without this script the
// button stays hidden and the menu stays open (every page works without scripts).
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  var button = document.getElementById("menu-button");
  var nav = document.getElementById("nav");
  if (!button || !nav) {
    return;
  }
  document.documentElement.classList.add("js");
  button.hidden = false;
  function set(open) {
    button.setAttribute("aria-expanded", open ? "true" : "false");
    nav.classList.toggle("closed", !open);
  }
  set(false);
  button.addEventListener("click", function () {
    set(button.getAttribute("aria-expanded") !== "true");
  });
  document.addEventListener("keydown", function (event) {
    if (event.key === "Escape" && button.getAttribute("aria-expanded") === "true") {
      set(false);
      button.focus();
    }
  });
});
