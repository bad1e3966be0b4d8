// Small helpers for the forms: show the fields of the chosen device type, confirm removals.
(function () {
  "use strict";
  function _(m) { return (window.I18N && window.I18N[m]) || m; }
  var type = document.getElementById("f-type");
  function showType() {
    document.querySelectorAll("fieldset.typefields").forEach(function (fs) {
      var on = fs.dataset.type === type.value;
      fs.classList.toggle("hidden", !on);
      fs.disabled = !on;   // disabled fieldsets are not submitted
    });
  }
  if (type) { type.addEventListener("change", showType); showType(); }
  document.querySelectorAll("form.confirm").forEach(function (f) {
    f.addEventListener("submit", function (ev) {
      if (!window.confirm(f.dataset.confirm || _("Sure?"))) ev.preventDefault();
    });
  });
  // after a save the answer sits at its form: bring the first problem (or the result) into view
  var bad = document.querySelector(".field.bad input, .field.bad select");
  var result = document.querySelector("section .flash");
  if (bad) bad.focus();
  else if (result) result.scrollIntoView({block: "center"});
})();
