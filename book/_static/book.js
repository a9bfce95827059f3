/* The book's own behaviour on top of sphinx-book-theme (book.css holds its layout rules). */

/* The ☰ button of the article header opens and closes the chapter list at every width.
 *
 * sphinx-book-theme 1.3 and pydata-sphinx-theme 0.17 attach their sidebar handlers to
 * document.querySelector(".primary-toggle"): the first such button in the page, which is the
 * navbar's own ☰ that the book theme hides. The ☰ a reader sees (in the article header) gets no
 * handler, so it did nothing. Its clicks are forwarded to the handled button, whose handlers then
 * collapse the sidebar on a wide screen and open the chapter list as a dialog on a narrow one.
 * tests/book/test_site.py clicks it at 1280 px and at 390 px.
 */
(() => {
  const forwardToggleClicks = () => {
    const [handled, ...others] = document.querySelectorAll(".primary-toggle");
    others.forEach((button) => button.addEventListener("click", (event) => {
      event.preventDefault();
      event.stopImmediatePropagation();
      button.blur();
      handled.click();
    }, true));
  };
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", forwardToggleClicks);
  } else {
    forwardToggleClicks();
  }
})();

/* A formula in running text that is wider than the line it sits in (a long inline formula on a
 * phone) is marked `book-wide-inline`: book.css then puts it on a line of its own, where it scrolls
 * if it is still too wide, instead of widening the page. Done once MathJax has typeset the page,
 * and again when the window changes size. */
(() => {
  const blockOf = (element) => {
    for (let node = element.parentElement; node; node = node.parentElement) {
      if (getComputedStyle(node).display !== "inline") return node;
    }
    return document.body;
  };
  const fitInlineMath = () => {
    document.querySelectorAll('mjx-container[jax]:not([display="true"])').forEach((formula) => {
      formula.classList.remove("book-wide-inline");
      const block = blockOf(formula);
      const style = getComputedStyle(block);
      const room = block.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
      if (formula.getBoundingClientRect().width > room + 1) formula.classList.add("book-wide-inline");
    });
  };
  let pending = null;
  window.addEventListener("resize", () => {
    clearTimeout(pending);
    pending = setTimeout(fitInlineMath, 200);
  });
  document.addEventListener("DOMContentLoaded", () => {
    if (window.MathJax && MathJax.startup && MathJax.startup.promise) MathJax.startup.promise.then(fitInlineMath);
  });
})();

/* A figure drawn wider than the column (an output stored before the book's 5-inch figure width, or
 * a wide grid on a phone) would be shrunk until its text is illegible. Instead it keeps 72% of its
 * drawn size, the smallest scale at which 10 pt labels stay readable, and its output box scrolls
 * sideways, as wide tables and formulas do (book.css). Figures that fit at that scale are left to
 * the column. The drawn size is the width the notebook stored with the image (a figure is stored
 * at twice its pixels for high-density screens, and a GIF may ask to be shown larger), else its
 * pixels. tests/book/test_site.py checks every figure at 1280 px and 390 px. */
(() => {
  const MIN_SCALE = 0.72;
  const fit = (img) => {
    const box = img.closest(".cell_output") || img.parentElement;
    if (!img.dataset.drawnWidth) {
      img.dataset.drawnWidth = parseFloat(img.style.width) || parseFloat(img.getAttribute("width")) || img.naturalWidth || "";
    }
    const drawn = Number(img.dataset.drawnWidth);
    img.style.maxWidth = "";
    img.style.width = drawn ? `${drawn}px` : "";
    img.style.height = "auto";
    if (!drawn || !box) return;
    const least = Math.floor(drawn * MIN_SCALE);
    if (least > box.clientWidth) {
      img.style.maxWidth = "none";
      img.style.width = `${least}px`;
      box.style.overflowX = "auto";
    }
  };
  const fitAll = () => document.querySelectorAll(".cell_output img").forEach((img) => {
    if (img.complete) fit(img); else img.addEventListener("load", () => fit(img), { once: true });
  });
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", fitAll);
  else fitAll();
  window.addEventListener("resize", fitAll);
})();

/* Result cells do not wrap, so that a number never breaks inside (book.css). A cell that holds a
 * sentence rather than a number (the appendix's "symptom" column) is marked `book-prose-cell` and
 * wraps like text; otherwise its row would run far past the column. */
(() => {
  const markProseCells = () => {
    document.querySelectorAll(".cell_output td").forEach((cell) => {
      if (cell.textContent.trim().length > 40) cell.classList.add("book-prose-cell");
    });
  };
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", markProseCells);
  } else {
    markProseCells();
  }
})();
