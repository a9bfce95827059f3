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
