// The link page (web/link-open.html) works without this script. It only keeps a second
// tap from sending the form again while the first is on its way.
const form = document.querySelector('[data-testid="link-open-form"]');
const button = document.querySelector('[data-testid="link-open"]');
form?.addEventListener("submit", (event) => {
  if (form.dataset.sent) {
    event.preventDefault();
    return;
  }
  form.dataset.sent = "1";
  // Disabled after this tick, so the click that submits still counts.
  setTimeout(() => { if (button) button.disabled = true; }, 0);
});
