// The explorer's picture: a PNG shown at a fixed size. A click picks the patch under the pointer; with the picture
// focused, the arrow keys move the pick, Escape clears it. The pick is [row, col] in the patch grid, or null.
function render({ model, el }) {
  el.classList.add("retokviz-picture");
  const img = document.createElement("img");
  img.tabIndex = 0;
  img.style.cssText = "display:block;image-rendering:pixelated;cursor:crosshair;outline-offset:2px";
  const clamp = (v, lo, hi) => Math.max(lo, Math.min(hi, v));
  function draw() {
    const size = model.get("size") + "px";
    img.src = model.get("png");
    img.style.width = size;
    img.style.height = size;
    img.title = model.get("hint");
    img.alt = model.get("hint") || "the picture";
  }
  function pick(value) {
    model.set("picked", value);
    model.save_changes();
  }
  img.addEventListener("click", (event) => {
    const box = img.getBoundingClientRect();
    const [rows, cols] = model.get("grid");
    const row = clamp(Math.floor(((event.clientY - box.top) / box.height) * rows), 0, rows - 1);
    const col = clamp(Math.floor(((event.clientX - box.left) / box.width) * cols), 0, cols - 1);
    pick([row, col]);
    img.focus();
  });
  img.addEventListener("keydown", (event) => {
    const [rows, cols] = model.get("grid");
    const moves = { ArrowUp: [-1, 0], ArrowDown: [1, 0], ArrowLeft: [0, -1], ArrowRight: [0, 1] };
    const now = model.get("picked") || [Math.floor(rows / 2), Math.floor(cols / 2)];
    if (event.key in moves) {
      const [dr, dc] = moves[event.key];
      pick([clamp(now[0] + dr, 0, rows - 1), clamp(now[1] + dc, 0, cols - 1)]);
    } else if (event.key === "Escape") {
      pick(null);
    } else {
      return;
    }
    event.preventDefault();
    event.stopPropagation();   // JupyterLab's own shortcuts (arrows move between cells) stay out of it
  });
  model.on("change:png", draw);
  model.on("change:size", draw);
  model.on("change:hint", draw);
  draw();
  el.appendChild(img);
}
export default { render };
