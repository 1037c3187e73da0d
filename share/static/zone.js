// The booking form's time zone: the browser's own, unless the customer picked one.
(function () {
  "use strict";
  var select = document.getElementById("field-timezone");
  var hidden = document.getElementById("browser-zone");
  if (!select || !hidden || !window.Intl) {
    return;
  }
  var zone = "";
  try {
    zone = Intl.DateTimeFormat().resolvedOptions().timeZone || "";
  } catch (error) {
    return;
  }
  hidden.value = zone;
  if (select.value !== "") {
    return;
  }
  for (var i = 0; i < select.options.length; i += 1) {
    if (select.options[i].value === zone) {
      select.selectedIndex = i;
      return;
    }
  }
})();
