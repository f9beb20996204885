// A play button that steps `value` from where it is to `max`, one step every `interval` ms, and stops there; a
// second click pauses where it is (never jumps back). At the end, play starts again from `min`.
function render({ model, el }) {
  const button = document.createElement("button");
  button.className = "jupyter-button widget-button";
  button.style.width = "86px";
  let timer = null;
  const label = () => { button.textContent = timer ? "\u275A\u275A pause" : "\u25B6 play"; };
  const stop = () => { if (timer) { clearInterval(timer); timer = null; } label(); };
  button.addEventListener("click", () => {
    if (timer) { stop(); return; }
    if (model.get("value") >= model.get("max")) { model.set("value", model.get("min")); model.save_changes(); }
    timer = setInterval(() => {
      const next = model.get("value") + 1;
      if (next > model.get("max")) { stop(); return; }
      model.set("value", next);
      model.save_changes();
      if (next >= model.get("max")) stop();
    }, model.get("interval"));
    label();
  });
  button.title = model.get("hint");
  model.on("change:hint", () => { button.title = model.get("hint"); });
  label();
  el.appendChild(button);
  return () => stop();
}
export default { render };
