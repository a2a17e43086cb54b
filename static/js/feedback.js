// "Was this answer helpful?" under a finished answer: yes, or no with a category and a comment,
// sent to the server (api/answers/<id>/feedback/) and shown as recorded. ``answer()`` returns
// the answer on display; feedback is only ever recorded for that one.

const FINAL = ["complete", "refused", "failed", "cancelled"];

export function feedbackBox(answer) {
  const $ = (id) => document.getElementById(id);
  const form = $("feedback-form"), status = $("feedback-status");
  const yes = $("feedback-yes"), no = $("feedback-no"), submit = $("feedback-submit");

  function state(fb, note) {
    yes.setAttribute("aria-pressed", String(!!fb && fb.helpful));
    no.setAttribute("aria-pressed", String(!!fb && !fb.helpful));
    status.className = ""; status.textContent = note || "";
  }

  // Show the box for answer ``a`` with the feedback already recorded on it.
  function render(a) {
    const fb = a.feedback;
    $("feedback").hidden = !FINAL.includes(a.status);
    form.hidden = !(fb && !fb.helpful);
    $("feedback-category").value = fb && !fb.helpful ? fb.category : "";
    $("feedback-comment").value = fb ? fb.comment : "";
    submit.textContent = fb && !fb.helpful ? "Update feedback" : "Send feedback";
    state(fb, fb ? "Thanks — recorded" : "");
  }

  async function send(body) {
    const shown = answer();
    if (!shown) { return; }
    const token = form.querySelector("[name=csrfmiddlewaretoken]").value;
    yes.disabled = no.disabled = submit.disabled = true;
    status.className = ""; status.textContent = "Sending…";
    try {
      const r = await fetch(`/api/answers/${shown.id}/feedback/`, {
        method: "POST", credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRFToken": token },
        body: JSON.stringify(body),
      });
      const data = await r.json().catch(() => ({}));
      if (r.redirected) { throw new Error("your session has ended; sign in again."); }
      if (!r.ok || !data.feedback) { throw new Error(data.error || `the server answered ${r.status}.`); }
      shown.feedback = data.feedback;
      if (answer() === shown) {
        state(data.feedback, data.message);
        form.hidden = data.feedback.helpful;
        submit.textContent = data.feedback.helpful ? "Send feedback" : "Update feedback";
      }
    } catch (err) {
      status.className = "error-text";
      status.textContent = "Feedback not recorded: " + err.message;
    } finally {
      yes.disabled = no.disabled = submit.disabled = false;
    }
  }

  yes.addEventListener("click", () => {
    form.hidden = true;
    send({ helpful: true, category: "", comment: "" });
  });
  no.addEventListener("click", () => {
    form.hidden = false;
    status.className = ""; status.textContent = "";
    $("feedback-category").focus();
  });
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    send({ helpful: false, category: $("feedback-category").value, comment: $("feedback-comment").value });
  });
  return { render };
}
