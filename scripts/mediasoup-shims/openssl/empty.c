/* Deliberately empty: meson no longer accepts a library without sources, and mediasoup links this
   shim's library with link_whole. The real code comes from the Debian library in meson.build. */
typedef int videoteller_mediasoup_shim_empty;
