// worldvla-bench HTML report: a click on a grid cell plays that episode's video in the player
// of its run; each player says whether its video could be loaded (data-state on the element).
(function () {
  function watch(video) {
    var status = document.getElementById(video.dataset.status);
    video.addEventListener("loadedmetadata", function () {
      video.dataset.state = "loaded";
      video.dataset.duration = video.duration.toFixed(2);
      if (status) { status.textContent = ""; }
    });
    video.addEventListener("error", function () {
      video.dataset.state = "error";
      if (status) { status.textContent = "this browser cannot play the video; open the link instead"; }
    });
  }
  document.querySelectorAll("video").forEach(watch);
  document.querySelectorAll("a[data-player]").forEach(function (link) {
    link.addEventListener("click", function (event) {
      var player = document.getElementById(link.dataset.player);
      if (!player) { return; }
      event.preventDefault();
      document.querySelectorAll("a.playing").forEach(function (a) { a.classList.remove("playing"); });
      link.classList.add("playing");
      player.removeAttribute("poster");
      player.src = link.getAttribute("href");
      var caption = document.getElementById(link.dataset.player + "-caption");
      if (caption) { caption.textContent = link.title; }
      player.play();
    });
  });
})();
