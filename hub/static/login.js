// Carries ?next= into the form and shows the error flag; the form itself posts without script.
const params = new URLSearchParams(location.search);
const next = params.get("next");
if (next && next.startsWith("/") && !next.startsWith("//")) {
  document.getElementById("login-next").value = next;
}
if (params.get("error")) {
  document.getElementById("login-error").hidden = false;
}
